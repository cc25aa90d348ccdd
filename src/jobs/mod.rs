//! Ready-made jobs that the `weir run` command drives without any Rust code.

pub mod attribution;
pub mod dedup;
pub mod distinct_count;
pub mod interval_join;
pub mod json_fields;
pub mod json_input;
pub mod json_output;
pub mod kafka_input;
pub mod session_count;
pub mod test_stream;
pub mod window_count;
