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
