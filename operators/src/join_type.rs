//! Which rows a join emits: inner, left/right/full outer, left semi and left anti (the SQL and
//! Spark join types), shared by every join operator.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The kind of a join, as in SQL and Spark's `join(other, on, how)`.
///
/// | type          | emits                                                                 |
/// |---------------|-----------------------------------------------------------------------|
/// | `Inner`       | every matching (left, right) pair                                     |
/// | `LeftOuter`   | the pairs, and each left row that never matched, with `right = None`  |
/// | `RightOuter`  | the pairs, and each right row that never matched, with `left = None`  |
/// | `FullOuter`   | the pairs, and the unmatched rows of both sides                       |
/// | `LeftSemi`    | each left row that matched at least once, once, without its matches  |
/// | `LeftAnti`    | each left row that never matched                                      |
///
/// Parsing accepts Spark's spellings (`left_outer`, `leftouter`, `left`, `outer`, `full`,
/// `semi`, `anti`, ...) and kebab-case (`left-outer`); it ignores case. It prints as kebab-case.
///
/// ```
/// use weir_operators::join_type::JoinType;
/// assert_eq!("left_outer".parse::<JoinType>().unwrap(), JoinType::LeftOuter);
/// assert_eq!("full".parse::<JoinType>().unwrap(), JoinType::FullOuter);
/// assert_eq!(JoinType::LeftAnti.to_string(), "left-anti");
/// assert!("sideways".parse::<JoinType>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JoinType {
    /// Matching pairs only.
    Inner,
    /// Matching pairs, plus unmatched left rows padded with `None` on the right.
    LeftOuter,
    /// Matching pairs, plus unmatched right rows padded with `None` on the left.
    RightOuter,
    /// Matching pairs, plus the unmatched rows of both sides, padded.
    FullOuter,
    /// Left rows with at least one match, each once.
    LeftSemi,
    /// Left rows with no match.
    LeftAnti,
}

impl JoinType {
    /// Every join type, in declaration order.
    pub const ALL: [JoinType; 6] = [
        JoinType::Inner,
        JoinType::LeftOuter,
        JoinType::RightOuter,
        JoinType::FullOuter,
        JoinType::LeftSemi,
        JoinType::LeftAnti,
    ];

    /// The kebab-case name: `inner`, `left-outer`, `right-outer`, `full-outer`, `left-semi`, `left-anti`.
    pub fn name(self) -> &'static str {
        match self {
            JoinType::Inner => "inner",
            JoinType::LeftOuter => "left-outer",
            JoinType::RightOuter => "right-outer",
            JoinType::FullOuter => "full-outer",
            JoinType::LeftSemi => "left-semi",
            JoinType::LeftAnti => "left-anti",
        }
    }

    /// Whether matching (left, right) pairs are emitted (all but semi and anti).
    pub fn emits_pairs(self) -> bool {
        matches!(self, JoinType::Inner | JoinType::LeftOuter | JoinType::RightOuter | JoinType::FullOuter)
    }

    /// Whether a left row that never matched is emitted (left outer, full outer, left anti).
    pub fn emits_unmatched_left(self) -> bool {
        matches!(self, JoinType::LeftOuter | JoinType::FullOuter | JoinType::LeftAnti)
    }

    /// Whether a right row that never matched is emitted (right outer, full outer).
    pub fn emits_unmatched_right(self) -> bool {
        matches!(self, JoinType::RightOuter | JoinType::FullOuter)
    }

    /// Whether the output holds left rows only (semi and anti).
    pub fn left_rows_only(self) -> bool {
        matches!(self, JoinType::LeftSemi | JoinType::LeftAnti)
    }
}

impl fmt::Display for JoinType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A join type name that is not one of the known spellings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{seen:?} is not a join type: use inner, left-outer, right-outer, full-outer, left-semi or left-anti \
     (Spark's spellings such as left_outer, leftouter, left, full, outer, semi and anti work too)"
)]
pub struct ParseJoinTypeError {
    /// The text that was seen.
    pub seen: String,
}

impl FromStr for JoinType {
    type Err = ParseJoinTypeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normalized: String =
            text.trim().chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
        Ok(match normalized.as_str() {
            "inner" => JoinType::Inner,
            "left" | "leftouter" => JoinType::LeftOuter,
            "right" | "rightouter" => JoinType::RightOuter,
            "full" | "outer" | "fullouter" => JoinType::FullOuter,
            "semi" | "leftsemi" => JoinType::LeftSemi,
            "anti" | "leftanti" => JoinType::LeftAnti,
            _ => return Err(ParseJoinTypeError { seen: text.to_string() }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_spark_spellings_parse() {
        for join_type in JoinType::ALL {
            assert_eq!(join_type.name().parse::<JoinType>().unwrap(), join_type);
            assert_eq!(join_type.to_string().parse::<JoinType>().unwrap(), join_type);
        }
        for (text, join_type) in [
            ("INNER", JoinType::Inner),
            ("left_outer", JoinType::LeftOuter),
            ("leftouter", JoinType::LeftOuter),
            ("left", JoinType::LeftOuter),
            ("right_outer", JoinType::RightOuter),
            ("outer", JoinType::FullOuter),
            ("full_outer", JoinType::FullOuter),
            ("left_semi", JoinType::LeftSemi),
            ("semi", JoinType::LeftSemi),
            ("left_anti", JoinType::LeftAnti),
            (" anti ", JoinType::LeftAnti),
        ] {
            assert_eq!(text.parse::<JoinType>().unwrap(), join_type, "{text}");
        }
        let error = "cross".parse::<JoinType>().unwrap_err().to_string();
        assert!(error.contains("not a join type") && error.contains("left-outer"), "{error}");
    }

    #[test]
    fn which_rows_each_type_emits() {
        use JoinType::*;
        let pairs: Vec<_> = JoinType::ALL.into_iter().filter(|j| j.emits_pairs()).collect();
        assert_eq!(pairs, [Inner, LeftOuter, RightOuter, FullOuter]);
        let left: Vec<_> = JoinType::ALL.into_iter().filter(|j| j.emits_unmatched_left()).collect();
        assert_eq!(left, [LeftOuter, FullOuter, LeftAnti]);
        let right: Vec<_> = JoinType::ALL.into_iter().filter(|j| j.emits_unmatched_right()).collect();
        assert_eq!(right, [RightOuter, FullOuter]);
    }
}
