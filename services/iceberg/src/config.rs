//! How a catalog is named and reached, as the configuration file says.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The AWS Glue Data Catalog (tables' data on S3).
    Glue,
    /// An Iceberg REST catalog (Lakekeeper, Polaris, S3 Tables).
    Rest,
    /// The SQL catalog on a SQLite file: the embedded default.
    Sql,
}

/// One catalog. `uri` is the Glue endpoint (override; AWS's by default),
/// the REST catalog's URL, or the SQL catalog's database URL. Values of
/// `properties` are passed to the catalog as they are (`s3.endpoint`,
/// `s3.path-style-access`, credentials...), except that a value
/// `env:NAME` is read from the environment variable `NAME`, so that
/// secrets stay outside the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    #[serde(skip)]
    pub name: String,
    pub kind: CatalogKind,
    pub uri: Option<String>,
    pub warehouse: Option<String>,
    /// The AWS region (Glue).
    pub region: Option<String>,
    /// Mirror hydrations' pins as tags in this catalog's tables, so that
    /// every engine's snapshot expiry keeps what copies still need. On by
    /// default, except on a REST catalog that signs in with an OAuth
    /// `credential`: sluice's own commits of tags send a bearer `token`.
    pub pin_tags: Option<bool>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl CatalogConfig {
    /// The embedded catalog: a SQLite file and a warehouse folder inside
    /// the data directory.
    pub fn embedded(name: &str, data_dir: &Path) -> CatalogConfig {
        let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        CatalogConfig {
            name: name.to_owned(),
            kind: CatalogKind::Sql,
            uri: Some(format!(
                "sqlite://{}?mode=rwc",
                dir.join("catalog.db").display()
            )),
            warehouse: Some(format!("file://{}", dir.join("warehouse").display())),
            region: None,
            pin_tags: None,
            properties: BTreeMap::new(),
        }
    }

    /// Whether pins are mirrored as tags (see `pin_tags`).
    pub fn pin_tags(&self) -> bool {
        self.pin_tags.unwrap_or(!self.oauth_only())
    }

    /// A REST catalog reached with an OAuth client credential and no token.
    fn oauth_only(&self) -> bool {
        self.kind == CatalogKind::Rest
            && self.properties.contains_key("credential")
            && !self.properties.contains_key("token")
    }

    /// What the catalog crates cannot tell at start.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !(self.pin_tags == Some(true) && self.oauth_only()),
            "catalog `{}`: pin_tags needs a bearer `token` property on a REST catalog \
             (tag commits do not sign in with an OAuth `credential`)",
            self.name
        );
        Ok(())
    }

    /// The properties the `iceberg` crate's builder of this kind expects.
    pub fn properties(&self) -> HashMap<String, String> {
        let mut props: HashMap<String, String> = self
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), resolve(v)))
            .collect();
        if let Some(uri) = &self.uri {
            props.insert("uri".into(), uri.clone());
        }
        if let Some(warehouse) = &self.warehouse {
            props.insert("warehouse".into(), warehouse.clone());
        }
        match self.kind {
            CatalogKind::Glue => {
                if let Some(region) = &self.region {
                    props.insert("region_name".into(), region.clone());
                    props.entry("s3.region".into()).or_insert(region.clone());
                }
            }
            CatalogKind::Sql => {
                // SQLite (and MySQL) bind with `?`.
                props
                    .entry("sql_bind_style".into())
                    .or_insert_with(|| "QMark".into());
            }
            CatalogKind::Rest => {}
        }
        props
    }
}

fn resolve(value: &str) -> String {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var).unwrap_or_default(),
        None => value.to_owned(),
    }
}
