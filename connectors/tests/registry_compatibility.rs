//! The compatibility levels on the cases Confluent documents (Schema Evolution and Compatibility):
//! adding/removing fields with and without defaults, type promotion, and transitive vs non-transitive levels
//! with three versions.

use apache_avro::Schema;
use weir_connectors::registry::store::parse_avro;
use weir_connectors::registry::CompatibilityLevel::{self, *};

fn record(fields: &str) -> Schema {
    parse_avro(&format!(r#"{{"type":"record","name":"User","fields":[{fields}]}}"#)).expect("valid schema").0
}

const ID: &str = r#"{"name":"id","type":"long"}"#;
const NAME: &str = r#"{"name":"name","type":"string"}"#;
const NAME_DEFAULT: &str = r#"{"name":"name","type":"string","default":""}"#;
const AGE_INT: &str = r#"{"name":"age","type":"int"}"#;
const AGE_LONG: &str = r#"{"name":"age","type":"long"}"#;

/// Is `new` compatible at `level` with `existing` (oldest first)?
fn compatible(level: CompatibilityLevel, existing: &[&Schema], new: &Schema) -> bool {
    let existing: Vec<(u32, Schema)> = existing.iter().enumerate().map(|(i, s)| (i as u32 + 1, (*s).clone())).collect();
    level.check(new, &existing).is_empty()
}

#[test]
fn adding_a_field_with_a_default_is_backward_and_forward_compatible() {
    let v1 = record(ID);
    let v2 = record(&format!("{ID},{NAME_DEFAULT}"));
    for level in [Backward, Forward, Full, BackwardTransitive, ForwardTransitive, FullTransitive, None] {
        assert!(compatible(level, &[&v1], &v2), "{level}");
    }
}

#[test]
fn adding_a_field_without_a_default_is_forward_but_not_backward_compatible() {
    let v1 = record(ID);
    let v2 = record(&format!("{ID},{NAME}"));
    assert!(!compatible(Backward, &[&v1], &v2));
    assert!(compatible(Forward, &[&v1], &v2), "old readers ignore the new field");
    assert!(!compatible(Full, &[&v1], &v2));
    assert!(compatible(None, &[&v1], &v2));
}

#[test]
fn removing_a_field_is_backward_compatible_and_forward_only_when_it_had_a_default() {
    let with_default = record(&format!("{ID},{NAME_DEFAULT}"));
    let without_default = record(&format!("{ID},{NAME}"));
    let removed = record(ID);
    assert!(compatible(Backward, &[&without_default], &removed), "new readers ignore the removed field");
    assert!(!compatible(Forward, &[&without_default], &removed), "old readers need a value for it");
    assert!(compatible(Forward, &[&with_default], &removed), "old readers use the default");
    assert!(compatible(Full, &[&with_default], &removed));
    assert!(!compatible(Full, &[&without_default], &removed));
}

#[test]
fn int_to_long_promotion_is_backward_only() {
    let v1 = record(&format!("{ID},{AGE_INT}"));
    let v2 = record(&format!("{ID},{AGE_LONG}"));
    assert!(compatible(Backward, &[&v1], &v2), "a long reader reads ints");
    assert!(!compatible(Forward, &[&v1], &v2), "an int reader cannot read longs");
    assert!(!compatible(Full, &[&v1], &v2));
}

#[test]
fn changing_a_type_incompatibly_fails_every_level_but_none() {
    let v1 = record(ID);
    let v2 = record(r#"{"name":"id","type":"string"}"#);
    for level in [Backward, Forward, Full, BackwardTransitive, ForwardTransitive, FullTransitive] {
        assert!(!compatible(level, &[&v1], &v2), "{level}");
    }
    assert!(compatible(None, &[&v1], &v2));
}

#[test]
fn transitive_levels_check_every_earlier_version_not_only_the_latest() {
    // v1: id; v2: id + name with a default; v3: id + name WITHOUT a default.
    // v3 reads v2 data (name present) but not v1 data (no name, no default): BACKWARD passes, BACKWARD_TRANSITIVE fails.
    let v1 = record(ID);
    let v2 = record(&format!("{ID},{NAME_DEFAULT}"));
    let v3 = record(&format!("{ID},{NAME}"));
    assert!(compatible(Backward, &[&v1, &v2], &v3));
    assert!(!compatible(BackwardTransitive, &[&v1, &v2], &v3));
    assert!(compatible(BackwardTransitive, &[&v2], &v3), "only one earlier version: same as BACKWARD");

    // Forward: w1: id + name (no default); w2: id + name with a default; w3: id only.
    // w2 reads w3 data (default), w1 cannot: FORWARD passes, FORWARD_TRANSITIVE fails.
    let w1 = record(&format!("{ID},{NAME}"));
    let w2 = record(&format!("{ID},{NAME_DEFAULT}"));
    let w3 = record(ID);
    assert!(compatible(Forward, &[&w1, &w2], &w3));
    assert!(!compatible(ForwardTransitive, &[&w1, &w2], &w3));
    assert!(compatible(Full, &[&w1, &w2], &w3));
    assert!(!compatible(FullTransitive, &[&w1, &w2], &w3));
}

#[test]
fn levels_parse_case_insensitively_and_reject_others() {
    assert_eq!("backward_transitive".parse::<CompatibilityLevel>().unwrap(), BackwardTransitive);
    assert_eq!("FULL".parse::<CompatibilityLevel>().unwrap(), Full);
    assert_eq!(FullTransitive.to_string(), "FULL_TRANSITIVE");
    let error = "SIDEWAYS".parse::<CompatibilityLevel>().unwrap_err();
    assert_eq!(error.error_code(), 42203);
    assert_eq!(error.status(), 422);
}
