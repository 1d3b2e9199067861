//! The view port over real containers. A PostgreSQL (Aurora) container
//! switches all the views of one remap in one transaction: each view's
//! columns and its target's are read under that transaction, checked by
//! the core's `views::plan`, then `CREATE OR REPLACE VIEW` (or `DROP VIEW`
//! and `CREATE VIEW` where the columns change otherwise), and one commit.
//! Readers never see a missing view or one view switched without the
//! others: PostgreSQL's DDL is transactional.
#![forbid(unsafe_code)]

mod postgres;

use sluice_core::containers::{Connection, Container, ContainerKind};
use sluice_core::views::{Plan, ViewError, ViewFuture, ViewPort, ViewRequest};

/// Every kind of container sluice can switch views in.
#[derive(Default)]
pub struct Containers;

impl ViewPort for Containers {
    fn remap<'a>(
        &'a self,
        container: &'a Container,
        requests: &'a [ViewRequest],
    ) -> ViewFuture<'a, Vec<Plan>> {
        Box::pin(async move {
            match &container.kind {
                ContainerKind::Postgres { connection } => {
                    postgres::remap(&url(connection)?, requests).await
                }
                ContainerKind::Glue { .. } => Err(ViewError::Unsupported(
                    "switching Athena views in a Glue database is not built yet".into(),
                )),
            }
        })
    }
}

/// The URL itself, or the one in the environment variable it names.
fn url(connection: &Connection) -> Result<String, ViewError> {
    match connection {
        Connection::Url(url) => Ok(url.clone()),
        Connection::Env(var) => std::env::var(var).map_err(|_| {
            ViewError::Unavailable(format!(
                "the environment variable `{var}` that holds the container's URL is not set"
            ))
        }),
    }
}
