//! Reading a whole JSON-lines file at once: the rows of a lookup table (see
//! `weir_operators::lookup_join::LookupTable::from_loader`), reloaded on each refresh.

use std::io::BufRead;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Every row of the JSON-lines file at `path`, decoded as `R`. Blank lines are skipped; the error
/// names the file and line of the first row that cannot be read or decoded.
///
/// ```
/// let path = std::env::temp_dir().join(format!("weir-doc-table-{}.jsonl", std::process::id()));
/// std::fs::write(&path, "{\"code\":\"fr\",\"name\":\"France\"}\n\n{\"code\":\"de\",\"name\":\"Germany\"}\n").unwrap();
/// let rows: Vec<serde_json::Value> = weir_connectors::files::read_json_lines(&path).unwrap();
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows[1]["name"], "Germany");
/// ```
pub fn read_json_lines<R: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<R>, String> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {} line {}: {e}", path.display(), index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line)
            .map_err(|e| format!("{} line {}: {e} (the line is {:?})", path.display(), index + 1, truncate(&line)))?;
        rows.push(row);
    }
    Ok(rows)
}

fn truncate(line: &str) -> String {
    line.chars().take(80).collect()
}
