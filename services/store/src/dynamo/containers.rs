//! Consumer data containers on DynamoDB.
//!
//! Items:
//! - `container` / NAME: the container as the SQL backends' row holds it
//!   (`kind`, `connection`, `glue_database`, `created_at`, `updated_at`),
//!   as its JSON document, version `v`. The connection is stored as SQL
//!   stores it (`Connection::stored`: an `env:VAR` reference, or the URL
//!   the operator gave), and read back through the same row mapping, so
//!   both the secret's handling and the errors that never quote it are
//!   the SQL backends'.

use super::items::{doc, version, Range};
use super::write::{Committed, Expect, Write};
use super::{DynamoBackend, TRANSACT_RETRIES};
use crate::error::StoreError;
use crate::ports::ContainerPort;
use crate::rows::containers::{kind_columns, schemas_column, ContainerRow};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sluice_core::containers::{Container, ContainerName};

const CONTAINERS: &str = "container";

/// A container's document: the columns of `rows::containers::ContainerRow`.
#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    kind: String,
    connection: Option<String>,
    glue_database: Option<String>,
    /// Written by later versions only: absent, the container allows any.
    #[serde(default)]
    schemas: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Stored {
    fn container(self) -> Result<Container, StoreError> {
        Container::try_from(ContainerRow {
            name: self.name,
            kind: self.kind,
            connection: self.connection,
            glue_database: self.glue_database,
            schemas: self.schemas,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl ContainerPort for DynamoBackend {
    fn put_container<'a>(&'a self, c: &'a Container) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            // An upsert, as SQL's: a lost race reads again and replaces
            // what won.
            for _ in 0..TRANSACT_RETRIES {
                let found = self.get(CONTAINERS, c.name.as_str()).await?;
                let (expect, created_at) = match &found {
                    Some(item) => (
                        Expect::Version(version(item)),
                        doc::<Stored>(item)?.created_at,
                    ),
                    // As SQL's insert: a new container is created when updated.
                    None => (Expect::Absent, c.updated_at.0),
                };
                let (kind, connection, glue_database) = kind_columns(&c.kind);
                let stored = Stored {
                    name: c.name.as_str().to_owned(),
                    kind: kind.to_owned(),
                    connection,
                    glue_database,
                    schemas: schemas_column(c),
                    created_at,
                    updated_at: c.updated_at.0,
                };
                let mut write = Write::default();
                write.put(CONTAINERS, c.name.as_str(), expect, &stored, []);
                if let Committed::Done { .. } = self.commit(&write).await? {
                    return Ok(found.is_none());
                }
            }
            Err(StoreError::Unavailable(format!(
                "container {} kept changing while it was written",
                c.name
            )))
        }
        .boxed()
    }

    fn container<'a>(
        &'a self,
        name: &'a ContainerName,
    ) -> BoxFuture<'a, Result<Option<Container>, StoreError>> {
        async move {
            self.get_doc::<Stored>(CONTAINERS, name.as_str())
                .await?
                .map(Stored::container)
                .transpose()
        }
        .boxed()
    }

    fn containers<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Container>, StoreError>> {
        async move {
            // An empty bound is not a key DynamoDB compares with: from the start.
            let range = match after {
                Some(after) if !after.is_empty() => Range::After(after.to_owned()),
                _ => Range::All,
            };
            let items = self
                .query(CONTAINERS, range, true, limit as usize, |_| true)
                .await?;
            items
                .iter()
                .map(|item| doc::<Stored>(item)?.container())
                .collect()
        }
        .boxed()
    }
}
