//! Typed registry errors, each mapped to the HTTP status and `error_code` Confluent documents.

/// An error answered to a client as `{"error_code": N, "message": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 404 / 40401.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 404 / 40402.
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    /// 404 / 40403 (`None`: lookup of a schema not registered under the subject).
    #[error("{}", match .0 { Some(id) => format!("Schema {id} not found"), None => "Schema not found".to_string() })]
    SchemaNotFound(Option<u32>),
    /// 404 / 40404.
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 404 / 40405.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 404 / 40406.
    #[error("Subject '{0}' Version {1} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, u32),
    /// 404 / 40407.
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, u32),
    /// 404 / 40408.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelCompatibilityNotConfigured(String),
    /// 404 / 40409.
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectLevelModeNotConfigured(String),
    /// 422 / 42201.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 422 / 42202.
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// 422 / 42203.
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel,
    /// 422 / 42204.
    #[error("Invalid mode. Valid values are READWRITE, READONLY, IMPORT")]
    InvalidMode,
    /// 422 / 42205.
    #[error("{0}")]
    OperationNotPermitted(String),
    /// 409 / 409.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .messages.join(", "))]
    Incompatible {
        /// The subject registered under.
        subject: String,
        /// What is incompatible.
        messages: Vec<String>,
    },
    /// 422 / 422: the request body is not what the endpoint expects.
    #[error("Unprocessable entity: {0}")]
    UnprocessableEntity(String),
    /// 404 / 404: no such endpoint.
    #[error("HTTP 404 Not Found")]
    NoSuchEndpoint,
    /// 405 / 405.
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
    /// 500 / 50001.
    #[error("Error while storing the registry: {0}")]
    Store(String),
}

impl RegistryError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self.error_code() {
            409 => 409,
            code if code >= 1000 => (code / 100) as u16,
            code => code as u16,
        }
    }

    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound(_) => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::SubjectSoftDeleted(_) => 40404,
            Self::SubjectNotSoftDeleted(_) => 40405,
            Self::VersionSoftDeleted(..) => 40406,
            Self::VersionNotSoftDeleted(..) => 40407,
            Self::SubjectLevelCompatibilityNotConfigured(_) => 40408,
            Self::SubjectLevelModeNotConfigured(_) => 40409,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel => 42203,
            Self::InvalidMode => 42204,
            Self::OperationNotPermitted(_) => 42205,
            Self::Incompatible { .. } => 409,
            Self::UnprocessableEntity(_) => 422,
            Self::NoSuchEndpoint => 404,
            Self::MethodNotAllowed => 405,
            Self::Store(_) => 50001,
        }
    }

    /// The JSON body Confluent answers with.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error_code": self.error_code(), "message": self.to_string()})
    }
}
