//! A tag committed through an Iceberg REST catalog's commit endpoint
//! (`POST /v1/{prefix}/namespaces/{ns}/tables/{t}`): the catalog writes the
//! metadata itself, so sluice sends only the ref's change and what must
//! still hold for it to apply: the same table (`assert-table-uuid`) with
//! the tag where sluice read it (`assert-ref-snapshot-id`). The catalog
//! applies it on its current metadata, so a writer's commit to the table
//! meanwhile does not conflict; another writer of the same tag does (409),
//! and the commit is then made again on what won.

use crate::CatalogConfig;
use iceberg::spec::TableMetadata;
use iceberg::TableIdent;
use serde_json::{json, Value};
use sluice_core::snapshots::{TagError, TagTarget};
use std::time::Duration;

/// What a tag commit needs to reach one REST catalog.
pub(crate) struct RestCommits {
    http: reqwest::Client,
    uri: String,
    warehouse: Option<String>,
    token: Option<String>,
    /// The path prefix, read from `/v1/config` by the first commit: a
    /// catalog's configuration does not change under a running server.
    prefix: tokio::sync::OnceCell<String>,
}

/// How a commit went: landed, or lost to another commit of the tag.
pub(crate) enum Committed {
    Yes,
    LostRace,
}

impl RestCommits {
    pub(crate) fn new(config: &CatalogConfig) -> anyhow::Result<RestCommits> {
        let props = config.properties();
        let uri = config
            .uri
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a REST catalog needs `uri`"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(RestCommits {
            http,
            uri: uri.trim_end_matches('/').to_owned(),
            warehouse: config.warehouse.clone(),
            token: props.get("token").cloned(),
            prefix: tokio::sync::OnceCell::new(),
        })
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// The path prefix the catalog's configuration endpoint gives (e.g. a
    /// warehouse's id), with its trailing `/`; empty when none.
    async fn prefix(&self) -> Result<&str, TagError> {
        self.prefix
            .get_or_try_init(|| self.read_prefix())
            .await
            .map(String::as_str)
    }

    async fn read_prefix(&self) -> Result<String, TagError> {
        let mut get = self.http.get(format!("{}/v1/config", self.uri));
        if let Some(warehouse) = &self.warehouse {
            get = get.query(&[("warehouse", warehouse)]);
        }
        let config: Value = answer(self.request(get).send().await)
            .await?
            .ok_or_else(|| TagError::Unavailable("the catalog's /v1/config answered 409".into()))?;
        let prefix = ["overrides", "defaults"]
            .iter()
            .find_map(|at| config[at]["prefix"].as_str())
            .unwrap_or_default();
        Ok(if prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", escape(prefix))
        })
    }

    /// Commit tag `name` of the table as `target` says, on the condition
    /// that the table is the one `metadata` describes and the tag is where
    /// `metadata` has it.
    pub(crate) async fn commit(
        &self,
        ident: &TableIdent,
        metadata: &TableMetadata,
        name: &str,
        target: Option<TagTarget>,
    ) -> Result<Committed, TagError> {
        let read = metadata.snapshot_for_ref(name).map(|s| s.snapshot_id());
        let update = match target {
            Some(t) => json!({
                "action": "set-snapshot-ref", "ref-name": name, "type": "tag",
                "snapshot-id": t.snapshot_id, "max-ref-age-ms": t.max_ref_age_ms.max(1),
            }),
            None => json!({ "action": "remove-snapshot-ref", "ref-name": name }),
        };
        let body = json!({
            "identifier": { "namespace": ident.namespace().as_ref(), "name": ident.name() },
            "requirements": [
                { "type": "assert-table-uuid", "uuid": metadata.uuid().to_string() },
                { "type": "assert-ref-snapshot-id", "ref": name, "snapshot-id": read },
            ],
            "updates": [update],
        });
        // The namespace's levels joined by the unit separator, as the
        // protocol spells a namespace in a path.
        let namespace = escape(&ident.namespace().as_ref().join("\u{1f}"));
        let url = format!(
            "{}/v1/{}namespaces/{namespace}/tables/{}",
            self.uri,
            self.prefix().await?,
            escape(ident.name())
        );
        let sent = self.request(self.http.post(url).json(&body)).send().await;
        Ok(match answer(sent).await? {
            Some(_) => Committed::Yes,
            None => Committed::LostRace,
        })
    }
}

/// A 2xx answer's body; `None` for 409 (a requirement no longer held);
/// 5xx and transport errors are worth retrying, any other refusal is not.
async fn answer(sent: reqwest::Result<reqwest::Response>) -> Result<Option<Value>, TagError> {
    let response = sent.map_err(|e| TagError::Unavailable(e.to_string()))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(Some(body));
    }
    if status == reqwest::StatusCode::CONFLICT {
        return Ok(None);
    }
    let message = body["error"]["message"]
        .as_str()
        .map_or_else(|| status.to_string(), |m| format!("{status}: {m}"));
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(TagError::Unavailable(message))
    } else {
        Err(TagError::Refused(format!(
            "the REST catalog refused the commit: {message}"
        )))
    }
}

/// Percent-encode one path segment: everything but unreserved characters.
fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
