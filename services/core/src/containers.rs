//! Consumer data containers: where hydrations copy tables to and where
//! consumer views live. A PostgreSQL (Aurora) container holds a connection
//! URL, or a reference `env:VAR` to one, so that the secret stays outside
//! sluice; a Glue container is an Athena database in the Glue catalog.
//! Whatever is stored, what is shown never carries a password.

use crate::time::Millis;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContainerError(pub String);

/// A container's name: 1 to 128 letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerName(String);

impl ContainerName {
    pub fn parse(raw: &str) -> Result<ContainerName, ContainerError> {
        let ok = (1..=128).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(ContainerName(raw.to_owned()))
        } else {
            Err(ContainerError(format!(
                "container name `{raw}` must be 1 to 128 letters, digits, `_` or `-`"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContainerName {
    type Error = ContainerError;
    fn try_from(raw: String) -> Result<ContainerName, ContainerError> {
        ContainerName::parse(&raw)
    }
}

impl From<ContainerName> for String {
    fn from(name: ContainerName) -> String {
        name.0
    }
}

impl std::fmt::Display for ContainerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How sluice reaches a PostgreSQL container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// The URL is in this environment variable of the sluice process.
    Env(String),
    /// The URL itself, kept in sluice's store (never shown with its password).
    Url(String),
}

impl Connection {
    /// `env:VAR` or a `postgres://` / `postgresql://` URL.
    pub fn parse(raw: &str) -> Result<Connection, ContainerError> {
        if let Some(var) = raw.strip_prefix("env:") {
            let ok = !var.is_empty()
                && var.len() <= 256
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if ok {
                Ok(Connection::Env(var.to_owned()))
            } else {
                Err(ContainerError(
                    "`env:` must name an environment variable (letters, digits, `_`)".into(),
                ))
            };
        }
        let scheme_ok = raw.starts_with("postgres://") || raw.starts_with("postgresql://");
        if !scheme_ok || raw.len() > 2048 || raw.chars().any(char::is_control) {
            return Err(ContainerError(
                "url must be `postgres://...` or `env:VAR` (a variable holding one)".into(),
            ));
        }
        Ok(Connection::Url(raw.to_owned()))
    }

    /// As stored: `env:VAR`, or the URL.
    pub fn stored(&self) -> String {
        match self {
            Connection::Env(var) => format!("env:{var}"),
            Connection::Url(url) => url.clone(),
        }
    }

    /// As shown: the reference, or the URL with its password (in the
    /// user-info part or a parameter [`is_secret_key`]) replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            Connection::Env(var) => format!("env:{var}"),
            Connection::Url(url) => redact_url(url),
        }
    }
}

fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // Everything before the last `@` is taken as user info: a password may
    // hold `/`, `?` or `@` unescaped, and hiding too much is safe where
    // hiding too little is not.
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    };
    let userinfo = userinfo.map_or_else(String::new, |u| match u.split_once(':') {
        Some((user, _password)) => format!("{user}:***@"),
        None => format!("{u}@"),
    });
    let after = match after.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => after.to_owned(),
    };
    format!("{scheme}://{userinfo}{after}")
}

/// Whether a URL query key names a secret: as the drivers read it
/// (percent-decoded, `+` a space: sqlx takes `pass%77ord` for
/// `password`), any key holding `password` whatever its case (`password`,
/// libpq's `sslpassword`, sqlx's `ssl-password`-like spellings). Hiding a
/// key that is no secret is harmless; showing one that is is not.
pub fn is_secret_key(raw: &str) -> bool {
    percent_decode(raw)
        .to_ascii_lowercase()
        .contains("password")
}

/// `%XX` decoded and `+` read as a space, as URL query parsers do; a `%`
/// not followed by two hex digits is kept as it is.
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerKind {
    Postgres {
        connection: Connection,
    },
    /// Athena views in this Glue database.
    Glue {
        database: String,
    },
}

impl ContainerKind {
    /// Where the container puts an unqualified table or view name:
    /// PostgreSQL's `public`, a Glue container's own database.
    pub fn default_schema(&self) -> &str {
        match self {
            ContainerKind::Postgres { .. } => "public",
            ContainerKind::Glue { database } => database,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerKind::Postgres { .. } => "postgres",
            ContainerKind::Glue { .. } => "glue",
        }
    }

    /// A Glue database name: 1 to 255 lower-case letters, digits or `_`
    /// (Glue folds case; Athena refuses the rest).
    pub fn glue(database: &str) -> Result<ContainerKind, ContainerError> {
        let ok = (1..=255).contains(&database.len())
            && database
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(ContainerKind::Glue {
                database: database.to_owned(),
            })
        } else {
            Err(ContainerError(format!(
                "Glue database `{database}` must be 1 to 255 lower-case letters, digits or `_`"
            )))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: ContainerName,
    pub kind: ContainerKind,
    /// The schemas (a Glue container: databases) its hydrations' targets
    /// and its views may be in; empty: any but the system schemas, which
    /// no container allows.
    pub schemas: Vec<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// At most this many allowed schemas per container.
pub const MAX_SCHEMAS: usize = 64;

/// Check a container's allowed schemas: each 1 to 63 letters, digits or
/// `_`, not starting with a digit, never a system schema, none twice.
pub fn check_schemas(schemas: &[String]) -> Result<(), ContainerError> {
    if schemas.len() > MAX_SCHEMAS {
        return Err(ContainerError(format!(
            "schemas lists {} schemas; at most {MAX_SCHEMAS}",
            schemas.len()
        )));
    }
    for (i, schema) in schemas.iter().enumerate() {
        let ok = (1..=63).contains(&schema.len())
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(ContainerError(format!(
                "schema `{schema}` must be 1 to 63 letters, digits or `_`, not starting with a digit"
            )));
        }
        crate::views::check_schema(&format!("{schema}.x")).map_err(ContainerError)?;
        if schemas[..i].contains(schema) {
            return Err(ContainerError(format!("schema `{schema}` is listed twice")));
        }
    }
    Ok(())
}

impl Container {
    /// Whether `name` (`schema.name`, or `name` in the container's default
    /// schema), a target or a view, may be in this container: never in a
    /// system schema, and in one of [`Container::schemas`] when it lists any.
    pub fn check_place(&self, what: &str, name: &str) -> Result<(), ContainerError> {
        crate::views::check_schema(name).map_err(|e| ContainerError(format!("{what} {e}")))?;
        if self.schemas.is_empty() {
            return Ok(());
        }
        let qualified = crate::views::qualified(name, self.kind.default_schema());
        let schema = qualified.split_once('.').map_or("", |(s, _)| s);
        if self.schemas.iter().any(|s| s == schema) {
            Ok(())
        } else {
            Err(ContainerError(format!(
                "{what} `{name}` is in schema `{schema}`, which container `{}` does not allow (it allows {})",
                self.name,
                self.schemas
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_schemas, Connection, Container, ContainerKind, ContainerName};
    use crate::time::Millis;

    fn container(kind: ContainerKind, schemas: &[&str]) -> Container {
        Container {
            name: ContainerName::parse("c").expect("valid"),
            kind,
            schemas: schemas.iter().map(|s| s.to_string()).collect(),
            created_at: Millis(0),
            updated_at: Millis(0),
        }
    }

    #[test]
    fn a_container_confines_names_to_the_schemas_it_allows() {
        let pg = ContainerKind::Postgres {
            connection: Connection::parse("env:URL").expect("valid"),
        };
        let any = container(pg.clone(), &[]);
        assert!(any.check_place("target", "sales.orders").is_ok());
        assert!(any.check_place("target", "pg_catalog.pg_authid").is_err());
        let two = container(pg, &["analytics", "public"]);
        assert!(two.check_place("view", "analytics.orders").is_ok());
        // Unqualified: in `public`, PostgreSQL's default.
        assert!(two.check_place("view", "orders").is_ok());
        let refused = two.check_place("target", "finance.ledger").unwrap_err();
        assert!(refused.0.contains("`finance`"), "{refused}");
        // Compared as quoted identifiers are: exactly.
        assert!(two.check_place("view", "Analytics.orders").is_err());
        let glue = container(ContainerKind::glue("lake").expect("valid"), &["lake"]);
        assert!(glue.check_place("view", "orders").is_ok());
        assert!(glue.check_place("view", "other.orders").is_err());
    }

    #[test]
    fn allowed_schemas_are_names_and_never_system_schemas() {
        let list = |l: &[&str]| check_schemas(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(list(&[]).is_ok());
        assert!(list(&["public", "analytics_2"]).is_ok());
        for bad in [
            &["pg_catalog"][..],
            &["information_schema"],
            &["PG_TOAST"],
            &[""],
            &["1abc"],
            &["a.b"],
            &["a b"],
            &["x", "x"],
        ] {
            assert!(list(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert!(check_schemas(&many).is_err());
    }

    fn shown(url: &str) -> String {
        Connection::parse(url).expect("valid").redacted()
    }

    #[test]
    fn a_shown_url_never_holds_its_password() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            (
                "postgres://h/db?sslmode=require",
                "postgres://h/db?sslmode=require",
            ),
            (
                "postgres://h/db?user=u&PASSWORD=secret",
                "postgres://h/db?user=u&PASSWORD=***",
            ),
            ("postgres://u:se/cr?et@h/db", "postgres://u:***@h/db"),
            ("postgres://u:se@cret@h/db", "postgres://u:***@h/db"),
            // The key as the driver decodes it: `pass%77ord` is `password`.
            (
                "postgres://h/db?user=u&pass%77ord=secret",
                "postgres://h/db?user=u&pass%77ord=***",
            ),
            (
                "postgres://h/db?%70%61%73%73%77%6F%72%64=secret&sslmode=require",
                "postgres://h/db?%70%61%73%73%77%6F%72%64=***&sslmode=require",
            ),
            (
                "postgres://h/db?sslpassword=secret&SslPass%57ord=secret",
                "postgres://h/db?sslpassword=***&SslPass%57ord=***",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(shown(url), want, "{url}");
            assert!(
                !shown(url).contains("secret") && !shown(url).contains("cr?et"),
                "{url}"
            );
        }
        assert_eq!(shown("env:AURORA_URL"), "env:AURORA_URL");
    }
}
