//! A source whose records are transformed as they are read, before their event time is read.
//!
//! Decoding is the use: Kafka gives bytes, the event time is inside the decoded value, and a
//! record that does not decode must fail the query (or go to a dead-letter output) at the
//! partition and offset where it was read, not vanish downstream.

use std::fmt::Debug;
use std::marker::PhantomData;

use crate::error::QueryError;
use crate::source::{PartitionReader, ReadStatus, Source};

/// What [`SourceExt::map_records`] calls for each record: `partition` is the source partition's
/// index. `Ok(Some(t))` passes `t` on, `Ok(None)` leaves the record out (the function has set it
/// aside and counted it, e.g. as a dead letter), `Err` fails the query with that error.
pub trait RecordMap<R, T>: Fn(usize, R) -> Result<Option<T>, QueryError> + Clone + 'static {}

impl<R, T, F> RecordMap<R, T> for F where F: Fn(usize, R) -> Result<Option<T>, QueryError> + Clone + 'static {}

/// Adds [`SourceExt::map_records`] to every [`Source`].
pub trait SourceExt: Source + Sized {
    /// This source with each record passed through `map` as it is read.
    ///
    /// ```
    /// use weir_runtime::map_source::SourceExt;
    /// use weir_runtime::memory_source::MemorySource;
    /// use weir_runtime::source::{PartitionReader, Source};
    /// let texts = MemorySource::new(vec![vec!["1".to_string(), "x".to_string(), "3".to_string()]]);
    /// // Numbers pass; a text that is not a number is left out.
    /// let numbers = texts.map_records(|_partition, text: String| Ok(text.parse::<u64>().ok()));
    /// let mut reader = numbers.open(0).unwrap();
    /// let mut out = Vec::new();
    /// reader.read(&mut out, 10).unwrap();
    /// assert_eq!(out, vec![1, 3]);
    /// ```
    fn map_records<T, F>(self, map: F) -> MapRecords<Self, F, T>
    where
        T: Clone + Debug + 'static,
        F: RecordMap<Self::Record, T>,
    {
        MapRecords { source: self, map, mapped: PhantomData }
    }
}

impl<S: Source> SourceExt for S {}

/// A [`Source`] whose records pass through a function as they are read (see
/// [`SourceExt::map_records`]). Its description, partitions and positions are the inner source's.
pub struct MapRecords<S, F, T> {
    source: S,
    map: F,
    mapped: PhantomData<fn() -> T>,
}

impl<S: Clone, F: Clone, T> Clone for MapRecords<S, F, T> {
    fn clone(&self) -> Self {
        MapRecords { source: self.source.clone(), map: self.map.clone(), mapped: PhantomData }
    }
}

impl<S, T, F> Source for MapRecords<S, F, T>
where
    S: Source,
    T: Clone + Debug + 'static,
    F: RecordMap<S::Record, T>,
{
    type Record = T;
    type Reader = MappedReader<S::Reader, F, T>;

    fn description(&self) -> String {
        self.source.description()
    }

    fn partitions(&self) -> usize {
        self.source.partitions()
    }

    fn open(&self, partition: usize) -> Result<Self::Reader, QueryError> {
        Ok(MappedReader {
            reader: self.source.open(partition)?,
            map: self.map.clone(),
            partition,
            read: Vec::new(),
            mapped: PhantomData,
        })
    }

    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<Self::Reader, QueryError> {
        Ok(MappedReader {
            reader: self.source.open_at(partition, position)?,
            map: self.map.clone(),
            partition,
            read: Vec::new(),
            mapped: PhantomData,
        })
    }

    fn nested_offsets(&self) -> bool {
        self.source.nested_offsets()
    }

    fn no_input_hint(&self) -> Option<String> {
        self.source.no_input_hint()
    }
}

/// The reader of one partition of a [`MapRecords`] source.
pub struct MappedReader<R: PartitionReader, F, T> {
    reader: R,
    map: F,
    partition: usize,
    read: Vec<R::Record>,
    mapped: PhantomData<fn() -> T>,
}

impl<R, T, F> PartitionReader for MappedReader<R, F, T>
where
    R: PartitionReader,
    T: 'static,
    F: RecordMap<R::Record, T>,
{
    type Record = T;

    fn read(&mut self, out: &mut Vec<T>, max: usize) -> Result<ReadStatus, QueryError> {
        self.read.clear();
        let status = self.reader.read(&mut self.read, max)?;
        for record in self.read.drain(..) {
            if let Some(mapped) = (self.map)(self.partition, record)? {
                out.push(mapped);
            }
        }
        Ok(status)
    }

    fn position(&self) -> serde_json::Value {
        self.reader.position()
    }

    fn latest(&self) -> Option<serde_json::Value> {
        self.reader.latest()
    }
}
