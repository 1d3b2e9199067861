//! Wake-ups across replicas: a commit NOTIFYs the tables it changed (in its
//! write statement); every replica LISTENs and wakes its local long-polls.

use super::PgBackend;
use crate::error::StoreError;
use crate::hub::{Hub, Wake};
use sluice_core::TableName;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;

pub(super) const CHANNEL: &str = "sluice_tables";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7000;

impl PgBackend {
    /// Wake local long-polls when another replica commits on their table.
    pub async fn listen(&self, hub: Arc<Hub>) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let mut listener = subscribe(&self.pool).await?;
        let pool = self.pool.clone();
        let me = self.replica.clone();
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let Some((from, tables)) = n.payload().split_once(':') else {
                            continue;
                        };
                        if from == me {
                            continue;
                        }
                        for table in tables.split(',') {
                            if let Ok(table) = TableName::parse(table) {
                                hub.publish(&table, Wake::Reload);
                            }
                        }
                    }
                    // The connection dropped and was re-established:
                    // notifications may have been missed.
                    Ok(None) => hub.reload_all(),
                    Err(error) => {
                        tracing::warn!(%error, "lost the LISTEN connection; retrying");
                        // A new listener, and only once it listens wake
                        // everyone to re-read: what was committed until
                        // then was not heard.
                        listener = loop {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            match subscribe(&pool).await {
                                Ok(listener) => break listener,
                                Err(error) => tracing::debug!(%error, "LISTEN not back yet"),
                            }
                        };
                        hub.reload_all();
                    }
                }
            }
        }))
    }
}

/// A connection listening on the channel.
async fn subscribe(pool: &sqlx::PgPool) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// `replica:table,table,...`, split to stay under the payload limit.
pub(super) fn notify_payloads(replica: &str, tables: &[&str]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for table in tables {
        if !current.is_empty() && current.len() + table.len() + 1 > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current = format!("{replica}:{table}");
        } else {
            current.push(',');
            current.push_str(table);
        }
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}
