//! Spark's `Dataset.show` table layout, for records rendered as JSON.

use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The width of a cell when truncating, as in Spark's `show(numRows, truncate = true)`.
pub(crate) const TRUNCATE_AT: usize = 20;

/// Spark's minimum column width.
const MIN_WIDTH: usize = 3;

/// The line of dashes framing the batch header, as Spark's console sink prints it.
const BATCH_RULE: &str = "-------------------------------------------";

/// The fields of one record, in the order they were serialized.
pub(crate) type Fields = Vec<(String, Value)>;

/// A JSON object read with its keys kept in order (a `serde_json::Map` may sort them).
struct OrderedObject(Fields);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(OrderedObject(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The fields of a record serialized as `json`: an object's keys in order, or a single field
/// `value` for anything that is not an object.
pub(crate) fn fields_of(json: &str) -> serde_json::Result<Fields> {
    if json.starts_with('{') {
        Ok(serde_json::from_str::<OrderedObject>(json)?.0)
    } else {
        Ok(vec![("value".to_string(), serde_json::from_str(json)?)])
    }
}

/// Renders one epoch as Spark's console sink does: the batch header, then the table of `rows`
/// (columns are the keys in order of first appearance; a missing key shows `null`), then
/// `only showing top N rows` when `more` rows were cut, then a blank line.
pub(crate) fn render_batch(batch: u64, rows: &[Fields], more: bool, truncate: bool) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for (key, _) in row {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let header: Vec<String> = columns.iter().map(|c| escape(c)).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| {
                    let cell = row.iter().find(|(key, _)| key == column).map_or(Value::Null, |(_, v)| v.clone());
                    shorten(escape(&cell_text(&cell)), truncate)
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count().max(MIN_WIDTH)).collect();
    for row in &body {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    let _ = write!(out, "{BATCH_RULE}\nBatch: {batch}\n{BATCH_RULE}\n");
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(*w))).collect::<String>() + "+\n";
    out.push_str(&rule);
    push_row(&mut out, &header, &widths, truncate);
    out.push_str(&rule);
    for row in &body {
        push_row(&mut out, row, &widths, truncate);
    }
    out.push_str(&rule);
    if more {
        let _ = writeln!(out, "only showing top {} {}", rows.len(), if rows.len() == 1 { "row" } else { "rows" });
    }
    out.push('\n');
    out
}

/// One `|a|b|` line: right-aligned when truncating, left-aligned otherwise (as Spark does).
fn push_row(out: &mut String, cells: &[String], widths: &[usize], truncate: bool) {
    for (cell, width) in cells.iter().zip(widths) {
        let pad = " ".repeat(width - cell.chars().count());
        out.push('|');
        if truncate {
            out.push_str(&pad);
            out.push_str(cell);
        } else {
            out.push_str(cell);
            out.push_str(&pad);
        }
    }
    out.push_str("|\n");
}

/// A cell's text: strings without quotes, `null`, and JSON for everything else.
fn cell_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Cuts a cell longer than [`TRUNCATE_AT`] characters to 17 characters and `...`.
fn shorten(cell: String, truncate: bool) -> String {
    if truncate && cell.chars().count() > TRUNCATE_AT {
        cell.chars().take(TRUNCATE_AT - 3).collect::<String>() + "..."
    } else {
        cell
    }
}

/// Shows control characters escaped, so each row stays on one line (Spark's `escapeMetaCharacters`).
fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0C}' => out.push_str("\\f"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0B}' => out.push_str("\\v"),
            '\u{07}' => out.push_str("\\a"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_layout_with_truncation_and_cut() {
        let rows: Vec<Fields> = [
            r#"{"word":"apple","count":3}"#,
            r#"{"word":"a rather long word indeed","count":12}"#,
            r#"{"word":"x\ny","count":null}"#,
        ]
        .iter()
        .map(|json| fields_of(json).unwrap())
        .collect();
        let expected = "\
-------------------------------------------
Batch: 7
-------------------------------------------
+--------------------+-----+
|                word|count|
+--------------------+-----+
|               apple|    3|
|a rather long wor...|   12|
|                x\\ny| null|
+--------------------+-----+
only showing top 3 rows

";
        assert_eq!(render_batch(7, &rows, true, true), expected);
    }

    #[test]
    fn untruncated_cells_are_left_aligned_and_scalars_are_a_value_column() {
        let rows: Vec<Fields> = ["1", "\"ab\""].iter().map(|json| fields_of(json).unwrap()).collect();
        assert_eq!(
            render_batch(0, &rows, false, false),
            "-------------------------------------------\nBatch: 0\n-------------------------------------------\n\
             +-----+\n|value|\n+-----+\n|1    |\n|ab   |\n+-----+\n\n"
        );
    }

    #[test]
    fn keys_keep_their_order_and_missing_ones_are_null() {
        let rows: Vec<Fields> =
            [r#"{"z":1,"a":2}"#, r#"{"b":true}"#].iter().map(|json| fields_of(json).unwrap()).collect();
        assert_eq!(
            render_batch(1, &rows, true, true),
            "-------------------------------------------\nBatch: 1\n-------------------------------------------\n\
             +----+----+----+\n|   z|   a|   b|\n+----+----+----+\n|   1|   2|null|\n|null|null|true|\n\
             +----+----+----+\nonly showing top 2 rows\n\n"
        );
    }
}
