//! The registry's state (schemas by global id, subjects with their versions, config and mode) and where it
//! is kept: behind [`RegistryStorage`], so a Kafka `_schemas` topic can be added beside the JSON file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use super::compatibility::{CompatibilityLevel, Mode};
use super::error::RegistryError;

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version number within the subject (1, 2, ...).
    pub version: u32,
    /// The global schema id.
    pub id: u32,
    /// Soft-deleted: hidden unless asked for with `deleted=true`; removed by a permanent delete.
    #[serde(default)]
    pub deleted: bool,
}

/// Everything the registry knows; what a [`RegistryStorage`] saves and loads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryState {
    /// Schemas by global id, in their normalised JSON form.
    pub schemas: BTreeMap<u32, String>,
    /// Versions of each subject, in increasing version order.
    pub subjects: BTreeMap<String, Vec<VersionRecord>>,
    /// The global compatibility level.
    #[serde(default)]
    pub compatibility: CompatibilityLevel,
    /// Subject-level compatibility levels.
    #[serde(default)]
    pub subject_compatibility: BTreeMap<String, CompatibilityLevel>,
    /// The global mode.
    #[serde(default)]
    pub mode: Mode,
    /// Subject-level modes.
    #[serde(default)]
    pub subject_modes: BTreeMap<String, Mode>,
}

/// Where the registry's state is kept.
pub trait RegistryStorage: Send {
    /// The saved state, or `None` when nothing was saved yet.
    fn load(&self) -> Result<Option<RegistryState>, RegistryError>;
    /// Saves the whole state; called after every change, before it is answered.
    fn save(&mut self, state: &RegistryState) -> Result<(), RegistryError>;
}

/// Keeps nothing: the state lives only as long as the process.
#[derive(Debug, Default)]
pub struct MemoryStorage;

impl RegistryStorage for MemoryStorage {
    fn load(&self) -> Result<Option<RegistryState>, RegistryError> {
        Ok(None)
    }

    fn save(&mut self, _state: &RegistryState) -> Result<(), RegistryError> {
        Ok(())
    }
}

/// Keeps the state in a JSON file, replaced atomically (written to a temporary file beside it, then renamed).
#[derive(Debug)]
pub struct JsonFileStorage {
    path: PathBuf,
}

impl JsonFileStorage {
    /// Storage in `path` (created on the first change).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RegistryStorage for JsonFileStorage {
    fn load(&self) -> Result<Option<RegistryState>, RegistryError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RegistryError::Store(format!("cannot parse {}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::Store(format!("cannot read {}: {e}", self.path.display()))),
        }
    }

    fn save(&mut self, state: &RegistryState) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| RegistryError::Store(e.to_string()))?;
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
        };
        write().map_err(|e| RegistryError::Store(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// Parses an Avro schema and returns it with its normalised JSON form (the form stored, returned and compared
/// to find an identical schema).
pub fn parse_avro(text: &str) -> Result<(Schema, String), RegistryError> {
    let schema = Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    let normalised = serde_json::to_string(&schema).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    Ok((schema, normalised))
}

/// A version argument: a number or `latest` (also `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// The highest non-deleted version.
    Latest,
    /// This version.
    Number(u32),
}

impl VersionSpec {
    /// Parses a path segment, answering 42202 as Confluent does for anything else.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<u32>() {
            Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(Self::Number(n)),
            _ => Err(RegistryError::InvalidVersion(text.to_string())),
        }
    }
}

/// A version of a subject as answered by `GET /subjects/{s}/versions/{v}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: u32,
    /// The global id.
    pub id: u32,
    /// The schema.
    pub schema: String,
}

/// Registration request: the schema and, in IMPORT mode, an explicit id and version.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// The schema text.
    pub schema: String,
    /// The id to use (IMPORT mode only).
    pub id: Option<u32>,
    /// The version to use (IMPORT mode only).
    pub version: Option<u32>,
}

/// The schema registry: its state and its storage. Every change is saved before it becomes visible.
pub struct Registry {
    state: RegistryState,
    storage: Box<dyn RegistryStorage>,
}

impl Registry {
    /// Opens the registry kept in `storage` (empty when nothing was saved yet).
    pub fn open(storage: Box<dyn RegistryStorage>) -> Result<Self, RegistryError> {
        let state = storage.load()?.unwrap_or_default();
        for (subject, versions) in &state.subjects {
            if let Some(v) = versions.iter().find(|v| !state.schemas.contains_key(&v.id)) {
                return Err(RegistryError::Store(format!(
                    "subject '{subject}' version {} refers to schema id {}, which is not stored",
                    v.version, v.id
                )));
            }
        }
        Ok(Self { state, storage })
    }

    /// The current state.
    pub fn state(&self) -> &RegistryState {
        &self.state
    }

    /// Applies `change` to a copy of the state, saves it, and only then makes it the state.
    fn change<T>(
        &mut self,
        change: impl FnOnce(&mut RegistryState) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut next = self.state.clone();
        let answer = change(&mut next)?;
        if next != self.state {
            self.storage.save(&next)?;
            self.state = next;
        }
        Ok(answer)
    }

    fn live_versions<'a>(&'a self, subject: &str) -> impl Iterator<Item = &'a VersionRecord> + 'a {
        self.state.subjects.get(subject).into_iter().flatten().filter(|v| !v.deleted)
    }

    /// Subjects with at least one version (non-deleted unless `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        let state = &self.state;
        state
            .subjects
            .iter()
            .filter(|(_, vs)| vs.iter().any(|v| deleted || !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The version numbers of a subject.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let versions: Vec<u32> = self
            .state
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|v| deleted || !v.deleted)
            .map(|v| v.version)
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    fn find_version(&self, subject: &str, spec: VersionSpec, deleted: bool) -> Result<&VersionRecord, RegistryError> {
        let records = self.state.subjects.get(subject).filter(|vs| vs.iter().any(|v| deleted || !v.deleted));
        let records = records.ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let mut visible = records.iter().filter(|v| deleted || !v.deleted);
        let found = match spec {
            VersionSpec::Latest => visible.next_back(),
            VersionSpec::Number(n) => visible.find(|v| v.version == n),
        };
        found.ok_or_else(|| {
            RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".to_string(),
                VersionSpec::Number(n) => n.to_string(),
            })
        })
    }

    /// One version of a subject.
    pub fn version(&self, subject: &str, spec: VersionSpec, deleted: bool) -> Result<SubjectVersion, RegistryError> {
        let record = self.find_version(subject, spec, deleted)?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: record.version,
            id: record.id,
            schema: self.state.schemas[&record.id].clone(),
        })
    }

    /// The schema with a global id.
    pub fn schema_by_id(&self, id: u32) -> Result<&str, RegistryError> {
        self.state.schemas.get(&id).map(String::as_str).ok_or(RegistryError::SchemaNotFound(Some(id)))
    }

    /// The (subject, version) pairs that use a global id.
    pub fn id_versions(&self, id: u32) -> Result<Vec<(String, u32)>, RegistryError> {
        self.schema_by_id(id)?;
        let mut pairs = Vec::new();
        for (subject, versions) in &self.state.subjects {
            pairs.extend(versions.iter().filter(|v| v.id == id && !v.deleted).map(|v| (subject.clone(), v.version)));
        }
        Ok(pairs)
    }

    /// The subject's compatibility level, or the global one.
    pub fn effective_compatibility(&self, subject: &str) -> CompatibilityLevel {
        self.state.subject_compatibility.get(subject).copied().unwrap_or(self.state.compatibility)
    }

    /// The subject's mode, or the global one.
    pub fn effective_mode(&self, subject: &str) -> Mode {
        self.state.subject_modes.get(subject).copied().unwrap_or(self.state.mode)
    }

    fn parsed_live_versions(&self, subject: &str) -> Vec<(u32, Schema)> {
        self.live_versions(subject)
            .filter_map(|v| Schema::parse_str(&self.state.schemas[&v.id]).ok().map(|s| (v.version, s)))
            .collect()
    }

    /// Registers a schema under a subject and returns its global id: the existing id when the subject already
    /// has it, else after the compatibility check, a new version with the id of an identical schema anywhere or a
    /// new id.
    pub fn register(&mut self, subject: &str, registration: &Registration) -> Result<u32, RegistryError> {
        let mode = self.effective_mode(subject);
        if mode == Mode::Readonly {
            return Err(RegistryError::OperationNotPermitted(format!("Subject {subject} is in read-only mode")));
        }
        let (schema, normalised) = parse_avro(&registration.schema)?;
        if let Some(existing) = self
            .live_versions(subject)
            .find(|v| self.state.schemas[&v.id] == normalised && registration.id.is_none_or(|id| id == v.id))
        {
            return Ok(existing.id);
        }
        if mode != Mode::Import {
            if registration.id.is_some() || registration.version.is_some() {
                return Err(RegistryError::OperationNotPermitted(
                    "Overwrite new schema with id or version is only allowed in IMPORT mode".to_string(),
                ));
            }
            let level = self.effective_compatibility(subject);
            let messages = level.check(&schema, &self.parsed_live_versions(subject));
            if !messages.is_empty() {
                return Err(RegistryError::Incompatible { subject: subject.to_string(), messages });
            }
        }
        let requested_id = registration.id;
        let requested_version = registration.version;
        self.change(|state| {
            let id = match requested_id {
                Some(id) => match state.schemas.get(&id) {
                    Some(existing) if *existing != normalised => {
                        return Err(RegistryError::OperationNotPermitted(format!(
                            "Overwrite new schema with id {id} is not permitted: a different schema has this id"
                        )))
                    }
                    _ => id,
                },
                None => match state.schemas.iter().find(|(_, s)| **s == normalised) {
                    Some((id, _)) => *id,
                    None => state.schemas.keys().next_back().map_or(1, |id| id + 1),
                },
            };
            state.schemas.insert(id, normalised.clone());
            let versions = state.subjects.entry(subject.to_string()).or_default();
            let version = match requested_version {
                Some(v) if versions.iter().any(|r| r.version == v) => {
                    return Err(RegistryError::OperationNotPermitted(format!(
                        "Version {v} of subject {subject} already exists"
                    )))
                }
                Some(v) => v,
                None => versions.iter().map(|r| r.version).max().unwrap_or(0) + 1,
            };
            versions.push(VersionRecord { version, id, deleted: false });
            versions.sort_by_key(|r| r.version);
            Ok(id)
        })
    }

    /// Is this schema registered (non-deleted) under the subject? Answers its version.
    pub fn lookup(&self, subject: &str, schema: &str, deleted: bool) -> Result<SubjectVersion, RegistryError> {
        if self.versions(subject, deleted).is_err() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let (_, normalised) = parse_avro(schema)?;
        let records = self.state.subjects.get(subject).into_iter().flatten();
        let found = records.filter(|v| deleted || !v.deleted).find(|v| self.state.schemas[&v.id] == normalised);
        let record = found.ok_or(RegistryError::SchemaNotFound(None))?;
        Ok(SubjectVersion { subject: subject.to_string(), version: record.version, id: record.id, schema: normalised })
    }

    /// Checks a schema with the subject's level against one version of the subject, or against the versions the
    /// level names (latest, or all for `_TRANSITIVE`) when `spec` is `None`. Returns the reasons it is incompatible.
    pub fn check_compatibility(
        &self,
        subject: &str,
        spec: Option<VersionSpec>,
        schema: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let (new, _) = parse_avro(schema)?;
        let level = self.effective_compatibility(subject);
        match spec {
            Some(spec) => {
                let record = self.find_version(subject, spec, false)?;
                let old = Schema::parse_str(&self.state.schemas[&record.id])
                    .map_err(|e| RegistryError::Store(e.to_string()))?;
                Ok(level.check(&new, &[(record.version, old)]))
            }
            None => Ok(level.check(&new, &self.parsed_live_versions(subject))),
        }
    }

    fn refuse_if_readonly(&self, subject: &str) -> Result<(), RegistryError> {
        if self.effective_mode(subject) == Mode::Readonly {
            return Err(RegistryError::OperationNotPermitted(format!("Subject {subject} is in read-only mode")));
        }
        Ok(())
    }

    /// Deletes a subject (soft, or permanent after a soft delete); answers the versions deleted.
    pub fn delete_subject(&mut self, subject: &str, permanent: bool) -> Result<Vec<u32>, RegistryError> {
        self.refuse_if_readonly(subject)?;
        let subject_name = subject.to_string();
        self.change(|state| {
            let versions = state.subjects.get_mut(subject).filter(|vs| !vs.is_empty());
            let versions = versions.ok_or_else(|| RegistryError::SubjectNotFound(subject_name.clone()))?;
            if permanent {
                if versions.iter().any(|v| !v.deleted) {
                    return Err(RegistryError::SubjectNotSoftDeleted(subject_name.clone()));
                }
                let deleted = versions.iter().map(|v| v.version).collect();
                state.subjects.remove(subject);
                state.subject_compatibility.remove(subject);
                state.subject_modes.remove(subject);
                Ok(deleted)
            } else {
                if versions.iter().all(|v| v.deleted) {
                    return Err(RegistryError::SubjectSoftDeleted(subject_name.clone()));
                }
                let mut deleted = Vec::new();
                for v in versions.iter_mut().filter(|v| !v.deleted) {
                    v.deleted = true;
                    deleted.push(v.version);
                }
                Ok(deleted)
            }
        })
    }

    /// Deletes one version (soft, or permanent after a soft delete); answers the version deleted.
    pub fn delete_version(&mut self, subject: &str, spec: VersionSpec, permanent: bool) -> Result<u32, RegistryError> {
        self.refuse_if_readonly(subject)?;
        let version = self.find_version(subject, spec, permanent)?.version;
        self.change(|state| {
            let versions = state.subjects.get_mut(subject).expect("found above");
            let index = versions.iter().position(|v| v.version == version).expect("found above");
            if permanent {
                if !versions[index].deleted {
                    return Err(RegistryError::VersionNotSoftDeleted(subject.to_string(), version));
                }
                versions.remove(index);
                if versions.is_empty() {
                    state.subjects.remove(subject);
                }
            } else {
                if versions[index].deleted {
                    return Err(RegistryError::VersionSoftDeleted(subject.to_string(), version));
                }
                versions[index].deleted = true;
            }
            Ok(version)
        })
    }

    /// Sets the global level (`None`) or a subject's.
    pub fn set_compatibility(&mut self, subject: Option<&str>, level: CompatibilityLevel) -> Result<(), RegistryError> {
        self.change(|state| {
            match subject {
                Some(s) => {
                    state.subject_compatibility.insert(s.to_string(), level);
                }
                None => state.compatibility = level,
            }
            Ok(())
        })
    }

    /// The subject-level compatibility (40408 when none is set unless `default_to_global`).
    pub fn subject_compatibility(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        match self.state.subject_compatibility.get(subject) {
            Some(level) => Ok(*level),
            None if default_to_global => Ok(self.state.compatibility),
            None => Err(RegistryError::SubjectLevelCompatibilityNotConfigured(subject.to_string())),
        }
    }

    /// Removes a subject-level compatibility; answers the level removed.
    pub fn delete_subject_compatibility(&mut self, subject: &str) -> Result<CompatibilityLevel, RegistryError> {
        self.change(|state| {
            state
                .subject_compatibility
                .remove(subject)
                .ok_or_else(|| RegistryError::SubjectLevelCompatibilityNotConfigured(subject.to_string()))
        })
    }

    /// Sets the global mode (`None`) or a subject's.
    pub fn set_mode(&mut self, subject: Option<&str>, mode: Mode) -> Result<(), RegistryError> {
        self.change(|state| {
            match subject {
                Some(s) => {
                    state.subject_modes.insert(s.to_string(), mode);
                }
                None => state.mode = mode,
            }
            Ok(())
        })
    }

    /// The subject-level mode (40409 when none is set unless `default_to_global`).
    pub fn subject_mode(&self, subject: &str, default_to_global: bool) -> Result<Mode, RegistryError> {
        match self.state.subject_modes.get(subject) {
            Some(mode) => Ok(*mode),
            None if default_to_global => Ok(self.state.mode),
            None => Err(RegistryError::SubjectLevelModeNotConfigured(subject.to_string())),
        }
    }

    /// Removes a subject-level mode; answers the mode removed.
    pub fn delete_subject_mode(&mut self, subject: &str) -> Result<Mode, RegistryError> {
        self.change(|state| {
            state
                .subject_modes
                .remove(subject)
                .ok_or_else(|| RegistryError::SubjectLevelModeNotConfigured(subject.to_string()))
        })
    }
}
