//! The view port over real containers. A PostgreSQL (Aurora) container
//! switches all the views of one remap in one transaction: each view's
//! columns and its target's are read under that transaction, checked by
//! the core's `views::plan`, then `CREATE OR REPLACE VIEW` (or `DROP VIEW`
//! and `CREATE VIEW` where the columns change otherwise), and one commit.
//! Readers never see a missing view or one view switched without the
//! others: PostgreSQL's DDL is transactional. A Glue container holds
//! Athena views (`glue.rs`).
#![forbid(unsafe_code)]

mod glue;
mod postgres;

use sluice_core::containers::{Connection, Container, ContainerKind};
use sluice_core::views::{Plan, ViewError, ViewFuture, ViewPort, ViewRequest};

/// Every kind of container sluice can switch views in. The Glue client
/// is made on first use from the default AWS configuration chain, with the
/// region and endpoint given here taking precedence.
#[derive(Default)]
pub struct Containers {
    region: Option<String>,
    endpoint_url: Option<String>,
    glue: tokio::sync::OnceCell<aws_sdk_glue::Client>,
}

impl Containers {
    pub fn new(region: Option<String>, endpoint_url: Option<String>) -> Containers {
        Containers {
            region,
            endpoint_url,
            glue: Default::default(),
        }
    }
}

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
                ContainerKind::Glue { database } => {
                    let client = self
                        .glue
                        .get_or_init(|| async {
                            let mut config =
                                aws_config::defaults(aws_config::BehaviorVersion::latest());
                            if let Some(region) = &self.region {
                                config = config.region(aws_config::Region::new(region.clone()));
                            }
                            if let Some(url) = &self.endpoint_url {
                                config = config.endpoint_url(url);
                            }
                            aws_sdk_glue::Client::new(&config.load().await)
                        })
                        .await;
                    glue::remap(client, database, requests).await
                }
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
