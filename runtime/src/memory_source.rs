//! An in-memory, bounded source (like Spark's `MemoryStream`): partitions given as vectors.
//! Used by tests and examples; each partition is read in order and then finishes.

use std::sync::Arc;

use crate::error::QueryError;
use crate::source::{PartitionReader, ReadStatus, Source};

/// A bounded source whose partitions are vectors of records, read in order.
///
/// ```
/// use weir_runtime::memory_source::MemorySource;
/// use weir_runtime::source::Source;
/// let source = MemorySource::new(vec![vec![1, 2], vec![3]]);
/// assert_eq!(source.partitions(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct MemorySource<D> {
    partitions: Arc<Vec<Vec<D>>>,
    name: String,
}

impl<D> MemorySource<D> {
    /// A source with one partition per vector.
    pub fn new(partitions: Vec<Vec<D>>) -> Self {
        MemorySource { partitions: Arc::new(partitions), name: "MemorySource".to_string() }
    }

    /// Names the source (its description in progress reports).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Reads one partition of a [`MemorySource`].
pub struct MemoryReader<D> {
    partitions: Arc<Vec<Vec<D>>>,
    partition: usize,
    next: usize,
}

impl<D: Clone + 'static> PartitionReader for MemoryReader<D> {
    type Record = D;
    fn read(&mut self, out: &mut Vec<D>, max: usize) -> Result<ReadStatus, QueryError> {
        let records = &self.partitions[self.partition];
        let end = (self.next + max).min(records.len());
        out.extend_from_slice(&records[self.next..end]);
        self.next = end;
        Ok(if end == records.len() { ReadStatus::Finished } else { ReadStatus::Ready })
    }
    fn position(&self) -> serde_json::Value {
        self.next.into()
    }
}

impl<D: Clone + std::fmt::Debug + 'static> Source for MemorySource<D> {
    type Record = D;
    type Reader = MemoryReader<D>;
    fn description(&self) -> String {
        self.name.clone()
    }
    fn partitions(&self) -> usize {
        self.partitions.len()
    }
    fn open(&self, partition: usize) -> Result<MemoryReader<D>, QueryError> {
        Ok(MemoryReader { partitions: self.partitions.clone(), partition, next: 0 })
    }
    /// Resumes at the index [`PartitionReader::position`] reported (the next record to read).
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<MemoryReader<D>, QueryError> {
        let len = self.partitions.get(partition).map_or(0, Vec::len);
        let next = position.as_u64().filter(|&next| next <= len as u64).ok_or_else(|| QueryError::Source {
            source_name: self.name.clone(),
            message: format!(
                "partition {partition} cannot resume at {position}: the position must be an index from 0 to {len} \
                 (the partition holds {len} records)"
            ),
        })?;
        Ok(MemoryReader { partitions: self.partitions.clone(), partition, next: next as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map_source::SourceExt;

    fn read_rest<R: PartitionReader>(reader: &mut R, batch: usize) -> Vec<R::Record> {
        let mut out = Vec::new();
        while reader.read(&mut out, batch).unwrap() != ReadStatus::Finished {}
        out
    }

    /// Reads `cut` records of `partition` in batches of at most `batch`, then resumes a fresh
    /// clone of the source at the reported position; returns (head, position, rest).
    fn cut_and_resume<S: Source + Clone>(
        source: &S,
        partition: usize,
        cut: usize,
        batch: usize,
    ) -> (Vec<S::Record>, serde_json::Value, Vec<S::Record>) {
        let mut reader = source.open(partition).unwrap();
        let mut head = Vec::new();
        while head.len() < cut {
            let max = (cut - head.len()).min(batch);
            reader.read(&mut head, max).unwrap();
        }
        let position = reader.position();
        let mut resumed = source.clone().open_at(partition, &position).unwrap();
        assert_eq!(resumed.position(), position);
        (head, position, read_rest(&mut resumed, batch + 2))
    }

    #[test]
    fn a_memory_source_resumes_at_its_index() {
        let partitions: Vec<Vec<u64>> =
            (0..3).map(|p| (0..(17 * p as u64 + 5)).map(|i| i * 10 + p as u64).collect()).collect();
        let source = MemorySource::new(partitions.clone());
        for (p, records) in partitions.iter().enumerate() {
            for cut in 0..=records.len() {
                let (head, position, rest) = cut_and_resume(&source, p, cut, 1 + cut % 4);
                assert_eq!(position, serde_json::json!(cut));
                assert_eq!(head[..], records[..cut]);
                assert_eq!(rest[..], records[cut..], "partition {p}, cut {cut}");
            }
        }
        let error = source.open_at(0, &serde_json::json!(6)).err().unwrap().to_string();
        assert!(error.contains("from 0 to 5"), "{error}");
        assert!(source.open_at(0, &serde_json::json!("x")).is_err());
    }

    /// `map_records` forwards `open_at` to the inner source: a mapped reader resumed at a position
    /// produces what the uninterrupted mapped reader produced after it, records left out included.
    #[test]
    fn a_mapped_source_resumes_through_the_inner_source() {
        let texts: Vec<String> = (0..40).map(|i| if i % 7 == 3 { format!("x{i}") } else { i.to_string() }).collect();
        let source = MemorySource::new(vec![texts]).map_records(|_, text: String| Ok(text.parse::<u64>().ok()));
        let all = read_rest(&mut source.open(0).unwrap(), 100);
        assert_eq!(all.len(), 34);
        for batch in [1, 3, 8] {
            let mut reader = source.open(0).unwrap();
            let mut head = Vec::new();
            for _ in 0..3 {
                reader.read(&mut head, batch).unwrap();
            }
            let position = reader.position();
            let mut resumed = source.clone().open_at(0, &position).unwrap();
            let mut rest = read_rest(&mut resumed, 5);
            head.append(&mut rest);
            assert_eq!(head, all, "batch {batch}, resumed at {position}");
        }
    }

    /// A source that does not implement `open_at` refuses to resume, naming itself.
    #[test]
    fn a_source_without_open_at_says_it_cannot_resume() {
        struct Plain;
        impl Source for Plain {
            type Record = u64;
            type Reader = MemoryReader<u64>;
            fn description(&self) -> String {
                "Plain[x]".into()
            }
            fn partitions(&self) -> usize {
                1
            }
            fn open(&self, partition: usize) -> Result<MemoryReader<u64>, QueryError> {
                MemorySource::new(vec![vec![1]]).open(partition)
            }
        }
        let error = Plain.open_at(0, &serde_json::json!(1)).err().unwrap().to_string();
        assert!(error.contains("source Plain[x] cannot resume from a checkpoint"), "{error}");
    }
}
