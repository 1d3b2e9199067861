//! The store's one error type. It says what a caller can do about a
//! failure (wait and retry, give up, report) and names no database library,
//! so nothing above the store depends on one.

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down, a pool is
    /// exhausted, a transaction was cancelled as a serialization or
    /// deadlock victim: the same call may succeed in a moment.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A write lost a race the rules did not see (a row another replica
    /// created first).
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// One transaction would pass the database's limit on its size
    /// (DynamoDB's 100 items): the writer commits the batch in parts.
    #[error("transaction too large: {0}")]
    TooLarge(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A bug or corrupt data: retrying will not help.
    #[error("storage failure: {0}")]
    Internal(String),
}

/// SQLSTATE classes and codes that mean "try again": connection exceptions
/// (08), insufficient resources (53), operator intervention such as a
/// shutdown or a server still starting (57), serialization failure and
/// deadlock (40001, 40P01).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code == "40001"
        || code == "40P01"
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        use sqlx::Error;
        match &error {
            Error::PoolTimedOut
            | Error::PoolClosed
            | Error::Io(_)
            | Error::Tls(_)
            | Error::Protocol(_)
            | Error::WorkerCrashed
            | Error::BeginFailed => StoreError::Unavailable(error.to_string()),
            Error::Database(db) => match db.code() {
                Some(code) if transient_sqlstate(&code) => {
                    StoreError::Unavailable(error.to_string())
                }
                // SQLite: the database is locked or busy past the timeout.
                Some(code) if code == "5" || code == "6" => {
                    StoreError::Unavailable(error.to_string())
                }
                _ if db.is_unique_violation() => StoreError::Conflict(error.to_string()),
                _ => StoreError::Internal(error.to_string()),
            },
            Error::RowNotFound => StoreError::NotFound(error.to_string()),
            _ => StoreError::Internal(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> StoreError {
        match error {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => StoreError::Internal(format!("migration: {other}")),
        }
    }
}
