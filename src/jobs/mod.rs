//! Ready-made jobs that the `weir run` command drives without any Rust code.

pub mod json_fields;
pub mod json_input;
pub mod window_count;
