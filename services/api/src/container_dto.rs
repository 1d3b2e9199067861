//! Bodies of the container routes. A container's secret is never in one.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use sluice_core::containers::{check_schemas, Connection, Container, ContainerKind};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKindBody {
    /// PostgreSQL or Aurora PostgreSQL.
    Postgres,
    /// Athena views in a Glue database.
    Glue,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutContainerBody {
    pub kind: ContainerKindBody,
    /// `postgres`: a `postgres://` URL, or `env:VAR`, the environment
    /// variable of the sluice process that holds one (the secret then
    /// stays outside sluice). Never shown back with its password.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^(env:[A-Za-z_][A-Za-z0-9_]{0,255}|postgres(ql)?://[^\u0000-\u001F\u007F-\u009F]*)$"
    )]
    pub url: Option<String>,
    /// `glue`: the Glue database the views live in.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[a-z0-9_]+$")]
    pub database: Option<String>,
    /// The schemas (a Glue container: databases) hydrations' targets and
    /// views may be in, at most 64; left out or empty: any but the system
    /// schemas (`pg_catalog`, `information_schema`, `pg_*`), which no
    /// container allows. A narrower list applies to remaps from then on.
    #[serde(default)]
    #[schema(
        max_items = 64,
        pattern = r"^(?![Pp][Gg]_)(?![Ii][Nn][Ff][Oo][Rr][Mm][Aa][Tt][Ii][Oo][Nn]_[Ss][Cc][Hh][Ee][Mm][Aa]$)[A-Za-z_][A-Za-z0-9_]{0,62}$"
    )]
    pub schemas: Option<Vec<String>>,
}

impl PutContainerBody {
    /// The allowed schemas, checked.
    pub fn schemas(&self) -> Result<Vec<String>, ApiError> {
        let schemas = self.schemas.clone().unwrap_or_default();
        check_schemas(&schemas).map_err(|e| ApiError::invalid(e.0))?;
        Ok(schemas)
    }

    pub fn kind(self) -> Result<ContainerKind, ApiError> {
        match (self.kind, self.url, self.database) {
            (ContainerKindBody::Postgres, Some(url), None) => Ok(ContainerKind::Postgres {
                connection: Connection::parse(&url).map_err(|e| ApiError::invalid(e.0))?,
            }),
            (ContainerKindBody::Glue, None, Some(database)) => {
                ContainerKind::glue(&database).map_err(|e| ApiError::invalid(e.0))
            }
            (ContainerKindBody::Postgres, _, _) => Err(ApiError::invalid(
                "a `postgres` container takes `url` (and no `database`)",
            )),
            (ContainerKindBody::Glue, _, _) => Err(ApiError::invalid(
                "a `glue` container takes `database` (and no `url`)",
            )),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerBody {
    pub name: String,
    pub kind: ContainerKindBody,
    /// `postgres`: the URL with its password replaced by `***`, or the
    /// `env:VAR` reference; left out for a token with scopes (a container
    /// is shared by every scope that hydrates into it, its address is not).
    pub url: Option<String>,
    /// `glue`: the Glue database.
    pub database: Option<String>,
    /// The schemas its targets and views may be in; empty: any but the
    /// system schemas.
    pub schemas: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Container> for ContainerBody {
    fn from(c: Container) -> ContainerBody {
        let (kind, url, database) = match c.kind {
            ContainerKind::Postgres { connection } => (
                ContainerKindBody::Postgres,
                Some(connection.redacted()),
                None,
            ),
            ContainerKind::Glue { database } => (ContainerKindBody::Glue, None, Some(database)),
        };
        ContainerBody {
            name: c.name.to_string(),
            kind,
            url,
            database,
            schemas: c.schemas,
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainersPage {
    pub containers: Vec<ContainerBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

impl ContainerBody {
    /// The container as a caller sees it: a scoped caller learns its name
    /// and kind, not where it is.
    pub fn shown(c: Container, scoped: bool) -> ContainerBody {
        let mut body = ContainerBody::from(c);
        if scoped {
            body.url = None;
        }
        body
    }
}
