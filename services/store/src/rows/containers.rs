//! Container rows as both SQL dialects hold them, and the statements both
//! accept (`$n` parameters).

use super::corrupt;
use crate::error::StoreError;
use sluice_core::containers::{Connection, Container, ContainerKind, ContainerName};
use sluice_core::Millis;

#[derive(sqlx::FromRow)]
pub struct ContainerRow {
    pub name: String,
    pub kind: String,
    pub connection: Option<String>,
    pub glue_database: Option<String>,
    /// The allowed schemas, a JSON array; `NULL`: any but the system ones.
    pub schemas: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<ContainerRow> for Container {
    type Error = StoreError;
    fn try_from(r: ContainerRow) -> Result<Container, StoreError> {
        let kind = match (r.kind.as_str(), r.connection, r.glue_database) {
            ("postgres", Some(c), _) => ContainerKind::Postgres {
                // Never the stored text in the message: it may hold a password.
                connection: Connection::parse(&c)
                    .map_err(|_| corrupt("containers.connection of", &r.name))?,
            },
            ("glue", _, Some(db)) => ContainerKind::Glue { database: db },
            (kind, _, _) => return Err(corrupt("containers.kind", kind)),
        };
        let schemas = match &r.schemas {
            Some(list) => {
                serde_json::from_str(list).map_err(|_| corrupt("containers.schemas", list))?
            }
            None => Vec::new(),
        };
        Ok(Container {
            name: ContainerName::parse(&r.name).map_err(|_| corrupt("containers.name", &r.name))?,
            kind,
            schemas,
            created_at: Millis(r.created_at),
            updated_at: Millis(r.updated_at),
        })
    }
}

/// The stored columns of a kind: `(kind, connection, glue_database)`.
pub fn kind_columns(kind: &ContainerKind) -> (&'static str, Option<String>, Option<String>) {
    match kind {
        ContainerKind::Postgres { connection } => ("postgres", Some(connection.stored()), None),
        ContainerKind::Glue { database } => ("glue", None, Some(database.clone())),
    }
}

/// The stored `schemas` column: `NULL` when the container allows any.
pub fn schemas_column(c: &Container) -> Option<String> {
    (!c.schemas.is_empty()).then(|| super::json_list(&c.schemas))
}

pub const CONTAINER_EXISTS: &str = "SELECT 1 FROM containers WHERE name = $1";

/// Insert or replace; `created_at` stays what it was.
pub const UPSERT_CONTAINER: &str =
    "INSERT INTO containers (name, kind, connection, glue_database, \
     schemas, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO \
     UPDATE SET kind = excluded.kind, connection = excluded.connection, \
     glue_database = excluded.glue_database, schemas = excluded.schemas, \
     updated_at = excluded.updated_at";

pub const CONTAINER_BY_NAME: &str = "SELECT name, kind, connection, glue_database, schemas, \
     created_at, updated_at FROM containers WHERE name = $1";

pub const CONTAINER_PAGE: &str = "SELECT name, kind, connection, glue_database, schemas, \
     created_at, updated_at FROM containers WHERE name > $1 ORDER BY name LIMIT $2";
