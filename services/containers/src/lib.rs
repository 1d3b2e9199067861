//! The view port over real containers. A PostgreSQL (Aurora) container
//! switches all the views of one remap in one transaction: each view's
//! columns and its target's are read under that transaction, checked by
//! the core's `views::plan`, then `CREATE OR REPLACE VIEW` (or `DROP VIEW`
//! and `CREATE VIEW` where the columns change otherwise), and one commit.
//! Readers never see a missing view or one view switched without the
//! others: PostgreSQL's DDL is transactional. A Glue container holds
//! Athena views (`glue.rs`).
//!
//! A remap never waits long on its container ([`Timeouts`]): a container
//! that does not answer, or a view a consumer's query holds, fails the
//! remap quickly as `Unavailable` (retried later), so that neither other
//! containers' remaps nor the view's readers queue behind it.
#![forbid(unsafe_code)]

mod glue;
mod postgres;

use sluice_core::containers::{percent_decode, Connection, Container, ContainerKind};
use sluice_core::views::{Plan, ViewError, ViewFuture, ViewPort, ViewRequest};
use std::time::Duration;

/// How long a remap waits on its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect (PostgreSQL: up to the end of the startup handshake;
    /// Glue: the TCP connection).
    pub connect: Duration,
    /// For a lock (PostgreSQL `lock_timeout`): the view's, which readers
    /// hold while they query it. Short, because new readers of the view
    /// queue behind the remap's request for as long as it waits.
    pub lock: Duration,
    /// For one statement (PostgreSQL `statement_timeout`; Glue: one call).
    pub statement: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            lock: Duration::from_secs(2),
            statement: Duration::from_secs(10),
        }
    }
}

/// Every kind of container sluice can switch views in. The Glue client
/// is made on first use from the default AWS configuration chain, with the
/// region and endpoint given here taking precedence.
#[derive(Default)]
pub struct Containers {
    region: Option<String>,
    endpoint_url: Option<String>,
    timeouts: Timeouts,
    glue: tokio::sync::OnceCell<aws_sdk_glue::Client>,
}

impl Containers {
    pub fn new(region: Option<String>, endpoint_url: Option<String>) -> Containers {
        Containers {
            region,
            endpoint_url,
            timeouts: Timeouts::default(),
            glue: Default::default(),
        }
    }

    pub fn with_timeouts(self, timeouts: Timeouts) -> Containers {
        Containers { timeouts, ..self }
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
                    let url = url(connection)?;
                    postgres::remap(&for_driver(&url), requests, self.timeouts)
                        .await
                        .map_err(|e| scrub(e, &url))
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
                            config = config.timeout_config(
                                aws_config::timeout::TimeoutConfig::builder()
                                    .connect_timeout(self.timeouts.connect)
                                    .operation_timeout(self.timeouts.statement)
                                    .build(),
                            );
                            aws_sdk_glue::Client::new(&config.load().await)
                        })
                        .await;
                    glue::remap(client, database, requests).await
                }
            }
        })
    }
}

/// The URL itself, or the one in the environment variable it names. A
/// variable that is not set is a refusal: retrying cannot set it.
fn url(connection: &Connection) -> Result<String, ViewError> {
    match connection {
        Connection::Url(url) => Ok(url.clone()),
        Connection::Env(var) => std::env::var(var).map_err(|_| {
            ViewError::Refused(format!(
                "the environment variable `{var}` that holds the container's URL is not set in sluice's environment"
            ))
        }),
    }
}

/// The URL without the secret-looking parameters sqlx does not read
/// (`sslpassword`, `PASSWORD`...): it would log their values as unknown.
fn for_driver(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = percent_decode(pair.split_once('=').map_or(*pair, |(k, _)| k));
            key == "password" || !key.to_ascii_lowercase().contains("password")
        })
        .collect();
    format!("{base}?{}", kept.join("&"))
}

/// The error without the URL's secrets, should the driver or the server
/// have quoted one: errors end up in answers, events and logs.
fn scrub(e: ViewError, url: &str) -> ViewError {
    let scrub = |m: String| {
        secrets(url)
            .iter()
            .filter(|s| s.len() >= 3)
            .fold(m, |m, s| m.replace(s.as_str(), "***"))
    };
    match e {
        ViewError::Unavailable(m) => ViewError::Unavailable(scrub(m)),
        ViewError::Refused(m) => ViewError::Refused(scrub(m)),
        other => other,
    }
}

/// The password in the user info and the values of secret parameters,
/// as written and decoded.
fn secrets(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut found = Vec::new();
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            found.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
            if sluice_core::containers::is_secret_key(key) {
                found.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|s| percent_decode(s)).collect();
    found.extend(decoded);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_errors_and_of_what_sqlx_logs() {
        let raw = "postgres://u:p%40ss1@h/db?sslmode=require&sslpassword=k3y&password=pw2";
        assert_eq!(
            for_driver(raw),
            "postgres://u:p%40ss1@h/db?sslmode=require&password=pw2"
        );
        let e = scrub(
            ViewError::Unavailable("p@ss1 p%40ss1 k3y pw2 kept".into()),
            raw,
        );
        assert_eq!(e, ViewError::Unavailable("*** *** *** *** kept".into()));
        let unset = url(&Connection::Env("SLUICE_TEST_SURELY_UNSET".into()));
        assert!(
            matches!(&unset, Err(ViewError::Refused(m)) if m.contains("SLUICE_TEST_SURELY_UNSET")),
            "{unset:?}"
        );
    }
}
