//! Output modes (like Spark's): which result rows an aggregation emits, and when.

use std::fmt;
use std::str::FromStr;

use weir_runtime::error::BuildError;

use crate::window::Windowing;

/// Which rows of an aggregation's result table are emitted, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// Each window is emitted once, final, when the watermark passes its end; then it is evicted.
    #[default]
    Append,
    /// At every epoch, the groups that changed in it, with their new values. Windows are evicted
    /// once the watermark passes their end.
    Update,
    /// At every epoch in which something changed, the whole result table. Nothing is evicted.
    /// The table is merged on worker 0, since every epoch emits all of it.
    Complete,
}

impl OutputMode {
    /// Checks that this mode can be used with `windowing`, with a message that says why not.
    pub fn validate(&self, windowing: &Windowing) -> Result<(), BuildError> {
        if *self == OutputMode::Append && !windowing.is_event_time() {
            return Err(BuildError::invalid(
                "output mode append",
                "append emits a group only once it is final, and an aggregation without an event-time window never becomes final, so it would never emit anything",
                "add a window (e.g. --window 10s) or use --output-mode update or complete",
            ));
        }
        Ok(())
    }
}

impl FromStr for OutputMode {
    type Err = BuildError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "append" => Ok(OutputMode::Append),
            "update" => Ok(OutputMode::Update),
            "complete" => Ok(OutputMode::Complete),
            other => Err(BuildError::invalid(
                "output mode",
                format!("{other:?} is not an output mode"),
                "use append, update or complete",
            )),
        }
    }
}

impl fmt::Display for OutputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputMode::Append => "append",
            OutputMode::Update => "update",
            OutputMode::Complete => "complete",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn append_needs_a_window() {
        let err = OutputMode::Append.validate(&Windowing::global()).unwrap_err();
        assert!(err.to_string().contains("never emit"), "{err}");
        assert!(OutputMode::Update.validate(&Windowing::global()).is_ok());
        assert!(OutputMode::Append.validate(&Windowing::tumbling(Duration::from_secs(1))).is_ok());
        assert_eq!("Complete".parse::<OutputMode>().unwrap(), OutputMode::Complete);
        assert!("sometimes".parse::<OutputMode>().is_err());
    }
}
