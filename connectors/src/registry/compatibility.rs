//! Confluent's compatibility levels, checked with apache-avro's schema resolution rules.

use std::fmt;
use std::str::FromStr;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use super::error::RegistryError;

/// A subject's (or the global) compatibility level. The default is `BACKWARD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// No check.
    None,
    /// The new schema can read data written with the latest version.
    #[default]
    Backward,
    /// The new schema can read data written with every earlier version.
    BackwardTransitive,
    /// The latest version can read data written with the new schema.
    Forward,
    /// Every earlier version can read data written with the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every earlier version.
    FullTransitive,
}

impl CompatibilityLevel {
    /// Checks `new` against the existing versions (oldest first, non-deleted). Returns the reasons it is
    /// incompatible; empty when compatible.
    pub fn check(self, new: &Schema, existing: &[(u32, Schema)]) -> Vec<String> {
        use CompatibilityLevel::*;
        let (backward, forward, transitive) = match self {
            None => return Vec::new(),
            Backward => (true, false, false),
            BackwardTransitive => (true, false, true),
            Forward => (false, true, false),
            ForwardTransitive => (false, true, true),
            Full => (true, true, false),
            FullTransitive => (true, true, true),
        };
        let against = if transitive { existing } else { &existing[existing.len().saturating_sub(1)..] };
        let mut messages = Vec::new();
        for (version, old) in against.iter().rev() {
            if backward {
                if let Err(error) = SchemaCompatibility::can_read(old, new) {
                    messages.push(format!(
                        "{self}: the new schema cannot read data written with version {version}: {error}"
                    ));
                }
            }
            if forward {
                if let Err(error) = SchemaCompatibility::can_read(new, old) {
                    messages.push(format!(
                        "{self}: version {version} cannot read data written with the new schema: {error}"
                    ));
                }
            }
        }
        messages
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        };
        f.write_str(name)
    }
}

impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    /// Case-insensitive, as Confluent accepts.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return Err(RegistryError::InvalidCompatibilityLevel),
        })
    }
}

/// A subject's (or the global) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Registration allowed, with compatibility checks.
    #[default]
    Readwrite,
    /// Registration and deletion refused.
    Readonly,
    /// Registration with explicit ids and versions, without compatibility checks.
    Import,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Readwrite => "READWRITE",
            Self::Readonly => "READONLY",
            Self::Import => "IMPORT",
        })
    }
}

impl FromStr for Mode {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Self::Readwrite,
            "READONLY" => Self::Readonly,
            "IMPORT" => Self::Import,
            _ => return Err(RegistryError::InvalidMode),
        })
    }
}
