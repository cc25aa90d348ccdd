//! The input of the JSON-lines jobs: a file, stdin or Kafka topics, an event-time field, and
//! watermark settings.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use timely::dataflow::Scope;
use weir_connectors::files::JsonLinesSource;
use weir_runtime::prelude::*;

use super::json_fields;
use super::kafka_input::KafkaInput;

/// JSON records with an event-time field, read with a watermark: JSON lines from a file or
/// stdin, or the values of Kafka records.
#[derive(Clone, Debug)]
pub struct JsonInput {
    /// The file (`-` is stdin); not read when `kafka` is set.
    pub path: String,
    /// Read these Kafka topics instead of the file.
    pub kafka: Option<KafkaInput>,
    /// The field holding the event time (ms integer or ISO-8601 string; `a.b` for nested).
    pub time_field: String,
    /// The allowed lateness.
    pub watermark_delay: Duration,
    /// When an input partition with no data stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    /// Whether records with an unreadable event time are dropped and counted instead of failing.
    pub drop_invalid_time: bool,
}

impl JsonInput {
    /// Checks that the file exists; `flag` names the command-line flag in the error.
    pub fn validate(&self, flag: &str) -> Result<(), BuildError> {
        if self.kafka.is_none() && self.path != "-" && !Path::new(&self.path).is_file() {
            return Err(BuildError::invalid(
                flag,
                format!("{} is not a readable file", self.path),
                "give a JSON-lines file, or - for stdin",
            ));
        }
        Ok(())
    }

    /// The watermark settings.
    pub fn watermark_options(&self) -> WatermarkOptions {
        watermark_options(self.watermark_delay, self.idle_timeout, self.drop_invalid_time)
    }

    /// The records as an event stream (on-time and late at their source). Fails when a Kafka
    /// input cannot be resolved against its cluster.
    pub fn events<'scope>(
        &self,
        scope: Scope<'scope, EventTime>,
        ctx: &QueryContext,
    ) -> Result<EventStream<'scope, Value>, BuildError> {
        if let Some(kafka) = &self.kafka {
            return kafka.events(scope, ctx, &self.time_field, self.watermark_options());
        }
        let time_field = self.time_field.clone();
        Ok(JsonLinesSource::<Value>::from_arg(&self.path).events(
            scope,
            ctx,
            move |record| json_fields::time_of(record, &time_field),
            self.watermark_options(),
        ))
    }
}

/// Watermark settings from the jobs' flags: the allowed lateness, when an idle partition stops
/// holding the watermark back, and whether records with an unreadable event time are dropped and
/// counted instead of failing the query.
pub fn watermark_options(delay: Duration, idle_timeout: Option<Duration>, drop_invalid_time: bool) -> WatermarkOptions {
    let mut options = WatermarkOptions::with_delay(delay);
    if let Some(idle) = idle_timeout {
        options = options.idle_timeout(idle);
    }
    if drop_invalid_time {
        options = options.invalid_time(InvalidTimePolicy::DropAndCount);
    }
    options
}
