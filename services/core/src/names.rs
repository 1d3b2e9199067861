//! Parsed names: a value of these types is valid by construction.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// An Iceberg table identifier, `namespace.table` (nested namespaces allowed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TableName(String);

pub const MAX_NAME_LEN: usize = 255;

impl TableName {
    pub fn parse(raw: &str) -> Result<TableName, NameError> {
        if raw.len() > MAX_NAME_LEN {
            return Err(NameError(format!(
                "table name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let parts: Vec<&str> = raw.split('.').collect();
        if parts.len() < 2 {
            return Err(NameError(format!(
                "table name `{raw}` must be `namespace.table`"
            )));
        }
        for part in parts {
            let ok = !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(NameError(format!(
                    "table name `{raw}`: each dot-separated part must be non-empty and use only letters, digits, `_` or `-`"
                )));
            }
        }
        Ok(TableName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// One of sluice's own tables (`sluice_system.*`: the scheduler
    /// leader's lease): no caller's lease, job or change names it.
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(RESERVED_NAMESPACE)
    }
}

/// The namespace of sluice's own tables.
pub const RESERVED_NAMESPACE: &str = "sluice_system.";

impl TryFrom<String> for TableName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TableName::parse(&value)
    }
}

impl From<TableName> for String {
    fn from(value: TableName) -> String {
        value.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CDC stream's name: one or more dot-separated parts (`orders_cdc`,
/// `sales.orders_cdc`). Token scopes match its prefix as they match tables'.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl StreamName {
    pub fn parse(raw: &str) -> Result<StreamName, NameError> {
        if raw.len() > MAX_NAME_LEN {
            return Err(NameError(format!(
                "stream name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let ok = raw.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !ok {
            return Err(NameError(format!(
                "stream name `{raw}`: each dot-separated part must be non-empty and use only letters, digits, `_` or `-`"
            )));
        }
        Ok(StreamName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        StreamName::parse(&value)
    }
}

impl From<StreamName> for String {
    fn from(value: StreamName) -> String {
        value.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_namespaced_identifiers() {
        assert!(TableName::parse("sales.orders").is_ok());
        assert!(TableName::parse("lake.raw-zone.orders_v2").is_ok());
    }

    #[test]
    fn refuses_bad_identifiers() {
        for bad in [
            "orders",
            "",
            ".orders",
            "sales.",
            "sales..orders",
            "sales.or ders",
            "a.b/c",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(TableName::parse(&format!("a.{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn stream_names_may_have_one_part() {
        assert!(StreamName::parse("orders_cdc").is_ok());
        assert!(StreamName::parse("sales.orders-cdc").is_ok());
        for bad in ["", ".x", "x.", "a..b", "a b", "a/b"] {
            assert!(StreamName::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
