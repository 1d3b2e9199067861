//! Bearer tokens and IAM principal rules on DynamoDB.
//!
//! Items: `token` / ID (the record), `token-name` / NAME (its id: names
//! are unique, so a create writes both on the condition that neither
//! exists), `aws-principal` / PATTERN (a rule).

use super::items::{doc, text, version};
use super::write::{number_attr, text_attr, Committed, Expect, Write};
use super::DynamoBackend;
use crate::error::StoreError;
use crate::ports::{TokenPort, TokenRecord};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::aws_identity::{ArnRule, LOGIN_TOKEN_PREFIX};
use sluice_core::Millis;

const TOKENS: &str = "token";
const NAMES: &str = "token-name";
const PRINCIPALS: &str = "aws-principal";

impl TokenPort for DynamoBackend {
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>, StoreError>> {
        async move { self.get_doc(TOKENS, id).await }.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, StoreError>> {
        async move {
            let mut tokens: Vec<TokenRecord> = self.docs(TOKENS).await?;
            tokens.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(tokens)
        }
        .boxed()
    }

    fn create<'a>(&'a self, t: &'a TokenRecord) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut write = Write::default();
            write.put_attrs(NAMES, &t.name, Expect::Absent, [text_attr("id", &t.id)]);
            write.put(TOKENS, &t.id, Expect::Absent, t, []);
            Ok(matches!(self.commit(&write).await?, Committed::Done { .. }))
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, name: &'a str, now: Millis) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let Some(named) = self.get(NAMES, name).await? else {
                return Ok(false);
            };
            let id = text(&named, "id")?;
            let Some(item) = self.get(TOKENS, id).await? else {
                return Ok(false);
            };
            let mut token: TokenRecord = doc(&item)?;
            if token.revoked_at.is_some() {
                return Ok(false);
            }
            token.revoked_at = Some(now);
            let mut write = Write::default();
            write.put(TOKENS, id, Expect::Version(version(&item)), &token, []);
            // Lost to another revoke: revoked all the same, by it.
            Ok(matches!(self.commit(&write).await?, Committed::Done { .. }))
        }
        .boxed()
    }

    fn prune_logins(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let mut expired: Vec<TokenRecord> = self
                .docs::<TokenRecord>(TOKENS)
                .await?
                .into_iter()
                .filter(|t| {
                    t.name.starts_with(LOGIN_TOKEN_PREFIX)
                        && t.expires_at.is_some_and(|at| at < before)
                })
                .collect();
            expired.sort_by_key(|t| t.expires_at);
            expired.truncate(limit as usize);
            let keys: Vec<(String, String)> = expired
                .iter()
                .flat_map(|t| {
                    [
                        (TOKENS.to_owned(), t.id.clone()),
                        (NAMES.to_owned(), t.name.clone()),
                    ]
                })
                .collect();
            self.delete_many(&keys).await?;
            Ok(expired.len() as u64)
        }
        .boxed()
    }

    fn aws_principals(&self) -> BoxFuture<'_, Result<Vec<ArnRule>, StoreError>> {
        // The partition sorts by pattern.
        async move { self.docs(PRINCIPALS).await }.boxed()
    }

    fn create_aws_principal<'a>(
        &'a self,
        rule: &'a ArnRule,
        now: Millis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut write = Write::default();
            write.put(
                PRINCIPALS,
                &rule.pattern,
                Expect::Absent,
                rule,
                [number_attr("created_at", now.0)],
            );
            Ok(matches!(self.commit(&write).await?, Committed::Done { .. }))
        }
        .boxed()
    }

    fn delete_aws_principal<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let Some(item) = self.get(PRINCIPALS, pattern).await? else {
                return Ok(false);
            };
            let mut write = Write::default();
            write.delete(PRINCIPALS, pattern, Expect::Version(version(&item)));
            Ok(matches!(self.commit(&write).await?, Committed::Done { .. }))
        }
        .boxed()
    }
}
