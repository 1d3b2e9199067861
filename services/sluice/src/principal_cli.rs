//! `sluice principal ...`: the rules that turn an AWS identity into a sluice
//! principal for IAM authentication (`POST /v1/auth/aws`), straight in the
//! database like the tokens.

use crate::config::{FileConfig, StorageArgs};
use clap::Subcommand;
use sluice_core::aws_identity::ArnRule;
use sluice_store::Store;

#[derive(Subcommand)]
pub enum PrincipalCmd {
    /// Map AWS identities to a role and scopes. A Glue job's session
    /// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) is matched as its
    /// role's ARN; of several matching rules the most specific wins.
    Create {
        /// An IAM ARN, `*` and `?` as wildcards:
        /// `arn:aws:iam::*:role/glue-ingest-*`.
        #[arg(long)]
        aws_arn: String,
        /// job, scheduler, operator or admin.
        #[arg(long)]
        role: String,
        /// Limit to tables whose names start with this prefix; repeat for
        /// several. None: every table.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List the rules.
    List {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Delete a rule (tokens it gave stay valid until they expire).
    Delete {
        #[arg(long)]
        aws_arn: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

pub async fn run(cmd: PrincipalCmd, file: &FileConfig) -> anyhow::Result<()> {
    let now = sluice_store::system_now();
    match cmd {
        PrincipalCmd::Create {
            aws_arn,
            role,
            scopes,
            storage,
        } => {
            anyhow::ensure!(
                aws_arn.starts_with("arn:") && aws_arn.len() <= 2048 && !aws_arn.contains(char::is_whitespace),
                "`{aws_arn}` is not an ARN pattern (arn:aws:iam::ACCOUNT:role/NAME, wildcards * and ?)"
            );
            let role = crate::token_cli::role_and_scopes(&role, &scopes)?;
            let rule = ArnRule {
                pattern: aws_arn,
                role,
                scopes,
            };
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            if !tokens.create_aws_principal(&rule, now).await? {
                // The pattern is taken: by this very rule (a deployment's
                // one-shot run again), or by another, not replaced.
                let same = tokens.aws_principals().await?.contains(&rule);
                anyhow::ensure!(
                    same,
                    "a different rule for `{}` exists (another role or scopes): delete it first",
                    rule.pattern
                );
                eprintln!("the rule for `{}` exists already", rule.pattern);
                return Ok(());
            }
            eprintln!(
                "AWS identities matching `{}` now get role {}",
                rule.pattern,
                role.as_str()
            );
        }
        PrincipalCmd::List { storage } => {
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            println!("{:<10} {:<24} aws arn", "role", "scopes");
            for rule in tokens.aws_principals().await? {
                let scopes = if rule.scopes.is_empty() {
                    "*".to_owned()
                } else {
                    rule.scopes.join(",")
                };
                println!("{:<10} {:<24} {}", rule.role.as_str(), scopes, rule.pattern);
            }
        }
        PrincipalCmd::Delete { aws_arn, storage } => {
            let tokens = Store::open_tokens(&storage.resolve(&file.database)?.0).await?;
            anyhow::ensure!(
                tokens.delete_aws_principal(&aws_arn).await?,
                "no rule for `{aws_arn}`"
            );
            eprintln!("deleted the rule for `{aws_arn}`");
        }
    }
    Ok(())
}
