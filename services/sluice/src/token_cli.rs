//! `sluice token ...`: create, list and revoke bearer tokens, straight in
//! the database (so the first admin token can be made before any exists).

use crate::config::{FileConfig, StorageArgs};
use anyhow::Context;
use clap::Subcommand;
use sluice_core::{Millis, Role, TableName};
use sluice_store::Store;

/// A token is meant to be rotated; ten years is already past any audit.
const MAX_EXPIRY_DAYS: u32 = 3650;

/// Who a token is for and what it may do.
#[derive(clap::Args)]
pub struct TokenSpec {
    /// A unique name: who or what uses the token.
    #[arg(long)]
    name: String,
    /// job, scheduler, operator or admin.
    #[arg(long)]
    role: String,
    /// Limit the token to tables whose names start with this prefix (e.g.
    /// `sales.`); repeat for several. None: every table.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Days until the token expires, 1 to 3650 (ten years); none: it does
    /// not.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_EXPIRY_DAYS as i64))]
    expires_in_days: Option<u32>,
}

impl TokenSpec {
    /// Its name, role, scopes and expiry, once they are known to be valid.
    fn checked(self, now: Millis) -> anyhow::Result<(String, Role, Vec<String>, Option<Millis>)> {
        let (role, expires_at) = validated(
            &self.name,
            &self.role,
            &self.scopes,
            self.expires_in_days,
            now,
        )?;
        Ok((self.name, role, self.scopes, expires_at))
    }
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        #[command(flatten)]
        spec: TokenSpec,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Store a token made elsewhere, read from an environment variable, so
    /// that a deployment's secret (a Kubernetes Secret, a Secrets Manager
    /// secret) is the token: the same token again changes nothing.
    Import {
        #[command(flatten)]
        spec: TokenSpec,
        /// The environment variable that holds the token, shaped
        /// `sluice_<16 letters or digits>_<32 or more>` (never a flag's
        /// value: that would show in the process list).
        #[arg(long, value_name = "VAR")]
        from_env: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Revoke a token by name.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

pub async fn run(cmd: TokenCmd, file: &FileConfig) -> anyhow::Result<()> {
    let now = sluice_store::system_now();
    match cmd {
        TokenCmd::Create { spec, storage } => {
            let (name, role, scopes, expires_at) = spec.checked(now)?;
            let (token, record) = sluice_api::auth::new_token(&name, role, scopes, expires_at, now);
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            anyhow::ensure!(
                tokens.create(&record).await?,
                "a token named `{name}` exists already"
            );
            eprintln!(
                "created token `{name}` (role {}); it is shown only now:",
                role.as_str()
            );
            println!("{token}");
        }
        TokenCmd::Import {
            spec,
            from_env,
            storage,
        } => {
            let (name, role, scopes, expires_at) = spec.checked(now)?;
            let token = std::env::var(&from_env)
                .with_context(|| format!("the environment variable `{from_env}` is not set"))?;
            let record = sluice_api::auth::imported_token(
                token.trim(),
                &name,
                role,
                scopes,
                expires_at,
                now,
            )
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{from_env}` does not hold a sluice token: sluice_<16 letters or digits>_<32 or more>"
                )
            })?;
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            if tokens.create(&record).await? {
                eprintln!("imported token `{name}` (role {})", role.as_str());
                return Ok(());
            }
            // The name is taken: by this very token (a re-run of the same
            // deployment step), or by another one, which is not replaced
            // behind an operator's back.
            let same = tokens.list().await?.into_iter().any(|t| {
                t.name == name
                    && t.id == record.id
                    && t.secret_sha256 == record.secret_sha256
                    && t.role == record.role
                    && t.scopes == record.scopes
                    && t.revoked_at.is_none()
            });
            anyhow::ensure!(
                same,
                "a different token named `{name}` exists (another secret, role or scopes, or revoked): \
                 revoke it and import this one under a new name"
            );
            eprintln!("token `{name}` is imported already");
        }
        TokenCmd::List { storage } => {
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            println!(
                "{:<24} {:<10} {:<24} {:<26} {:<26} revoked",
                "name", "role", "scopes", "created", "expires"
            );
            for t in tokens.list().await? {
                let scopes = if t.scopes.is_empty() {
                    "*".to_owned()
                } else {
                    t.scopes.join(",")
                };
                println!(
                    "{:<24} {:<10} {:<24} {:<26} {:<26} {}",
                    t.name,
                    t.role.as_str(),
                    scopes,
                    t.created_at.to_rfc3339(),
                    t.expires_at.map_or("never".into(), Millis::to_rfc3339),
                    t.revoked_at.map_or("no".into(), Millis::to_rfc3339),
                );
            }
        }
        TokenCmd::Revoke { name, storage } => {
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            anyhow::ensure!(
                tokens.revoke(&name, now).await?,
                "no live token named `{name}`"
            );
            eprintln!("revoked token `{name}`; servers refuse it within 5 s");
        }
    }
    Ok(())
}

/// The role and expiry of a token to store, once its name and scopes are
/// known to be valid.
fn validated(
    name: &str,
    role: &str,
    scopes: &[String],
    expires_in_days: Option<u32>,
    now: Millis,
) -> anyhow::Result<(Role, Option<Millis>)> {
    let role = role_and_scopes(role, scopes)?;
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 256 && !name.chars().any(char::is_control),
        "the name must be 1 to 256 characters"
    );
    anyhow::ensure!(
        !name.starts_with(sluice_api::auth::AWS_LOGIN_PREFIX),
        "names starting with `{}` are IAM logins' own",
        sluice_api::auth::AWS_LOGIN_PREFIX
    );
    Ok((
        role,
        expires_in_days.map(|d| Millis(now.0 + i64::from(d) * 86_400_000)),
    ))
}

/// The role a token or an AWS principal rule gives, once it and the scopes
/// are known to be valid.
pub(crate) fn role_and_scopes(role: &str, scopes: &[String]) -> anyhow::Result<Role> {
    let role = Role::parse(role).ok_or_else(|| {
        anyhow::anyhow!("unknown role `{role}`: job, scheduler, operator or admin")
    })?;
    for scope in scopes {
        anyhow::ensure!(
            valid_scope(scope),
            "scope `{scope}` is not a table name prefix"
        );
    }
    Ok(role)
}

/// A scope is the start of a table name: `sales.` or `sales.ord`.
fn valid_scope(scope: &str) -> bool {
    let probe = format!("{scope}x");
    !scope.is_empty()
        && (TableName::parse(&probe).is_ok() || TableName::parse(&format!("{probe}.x")).is_ok())
}
