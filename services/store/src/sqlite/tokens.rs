//! Bearer tokens on SQLite.

use super::SqliteBackend;
use crate::error::StoreError;
use crate::ports::{TokenPort, TokenRecord};
use crate::rows::json_list;
use crate::rows::tokens::{
    AwsPrincipalRow, DELETE_AWS_PRINCIPAL, INSERT_AWS_PRINCIPAL, PRUNE_LOGINS,
};
use crate::rows::tokens::{
    TokenRow, INSERT_TOKEN, REVOKE_TOKEN, SELECT_AWS_PRINCIPALS, TOKEN_COLUMNS,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::aws_identity::ArnRule;
use sluice_core::Millis;

impl TokenPort for SqliteBackend {
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>, StoreError>> {
        async move {
            let row: Option<TokenRow> = sqlx::query_as(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"
            ))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
            row.map(TokenRecord::try_from).transpose()
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, StoreError>> {
        async move {
            let rows: Vec<TokenRow> = sqlx::query_as(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"
            ))
            .fetch_all(&self.readers)
            .await?;
            rows.into_iter().map(TokenRecord::try_from).collect()
        }
        .boxed()
    }

    fn create<'a>(&'a self, t: &'a TokenRecord) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let inserted = sqlx::query(INSERT_TOKEN)
                .bind(&t.id)
                .bind(&t.name)
                .bind(t.role.as_str())
                .bind(json_list(&t.scopes))
                .bind(&t.secret_sha256)
                .bind(t.created_at.0)
                .bind(t.expires_at.map(|m| m.0))
                .bind(t.revoked_at.map(|m| m.0))
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(inserted == 1)
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, name: &'a str, now: Millis) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query(REVOKE_TOKEN)
                .bind(now.0)
                .bind(name)
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(done == 1)
        }
        .boxed()
    }

    fn prune_logins(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let done = sqlx::query(PRUNE_LOGINS)
                .bind(before.0)
                .bind(i64::from(limit))
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(done)
        }
        .boxed()
    }

    fn aws_principals(&self) -> BoxFuture<'_, Result<Vec<ArnRule>, StoreError>> {
        async move {
            let rows: Vec<AwsPrincipalRow> = sqlx::query_as(SELECT_AWS_PRINCIPALS)
                .fetch_all(&self.readers)
                .await?;
            rows.into_iter().map(ArnRule::try_from).collect()
        }
        .boxed()
    }

    fn create_aws_principal<'a>(
        &'a self,
        rule: &'a ArnRule,
        now: Millis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let inserted = sqlx::query(INSERT_AWS_PRINCIPAL)
                .bind(&rule.pattern)
                .bind(rule.role.as_str())
                .bind(json_list(&rule.scopes))
                .bind(now.0)
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(inserted == 1)
        }
        .boxed()
    }

    fn delete_aws_principal<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let deleted = sqlx::query(DELETE_AWS_PRINCIPAL)
                .bind(pattern)
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(deleted == 1)
        }
        .boxed()
    }
}
