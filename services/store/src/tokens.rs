//! Bearer tokens: who they name, their role and scopes, and a SHA-256 of
//! their secret (the secret itself is never stored). Tokens change rarely
//! and outside the lease path, so they are plain statements, not commands.

use crate::StoreError;
use sluice_core::{Millis, Role};
use sqlx::{PgPool, SqlitePool};

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// The public part of the token, used to find it.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Table name prefixes; empty: every table.
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    scopes: String,
    secret_sha256: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, name, role, scopes, secret_sha256, created_at, expires_at, revoked_at";

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            role: Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("role `{}`", r.role)))?,
            scopes: serde_json::from_str(&r.scopes)
                .map_err(|_| StoreError::Corrupt(format!("scopes `{}`", r.scopes)))?,
            id: r.id,
            name: r.name,
            secret_sha256: r.secret_sha256,
            created_at: Millis(r.created_at),
            expires_at: r.expires_at.map(Millis),
            revoked_at: r.revoked_at.map(Millis),
        })
    }
}

/// The token table of either database.
#[derive(Clone)]
pub enum Tokens {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Tokens {
    pub async fn find(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
        let row: Option<TokenRow> = match self {
            Tokens::Sqlite(pool) => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?,
            Tokens::Postgres(pool) => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?,
        };
        row.map(TokenRecord::try_from).transpose()
    }

    pub async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name");
        let rows: Vec<TokenRow> = match self {
            Tokens::Sqlite(pool) => sqlx::query_as(&sql).fetch_all(pool).await?,
            Tokens::Postgres(pool) => sqlx::query_as(&sql).fetch_all(pool).await?,
        };
        rows.into_iter().map(TokenRecord::try_from).collect()
    }

    /// Store a new token; `false` if the name is taken.
    pub async fn create(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO api_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING"
        );
        let scopes = serde_json::to_string(&t.scopes).expect("scopes serialize");
        macro_rules! run {
            ($pool:expr) => {
                sqlx::query(&sql)
                    .bind(&t.id)
                    .bind(&t.name)
                    .bind(t.role.as_str())
                    .bind(&scopes)
                    .bind(&t.secret_sha256)
                    .bind(t.created_at.0)
                    .bind(t.expires_at.map(|m| m.0))
                    .bind(t.revoked_at.map(|m| m.0))
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        let inserted = match self {
            Tokens::Sqlite(pool) => run!(pool),
            Tokens::Postgres(pool) => run!(pool),
        };
        Ok(inserted == 1)
    }

    /// Revoke the token named `name`; `false` if there is none (or it was
    /// revoked already).
    pub async fn revoke(&self, name: &str, now: Millis) -> Result<bool, StoreError> {
        let sql = "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL";
        let done = match self {
            Tokens::Sqlite(pool) => sqlx::query(sql)
                .bind(now.0)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected(),
            Tokens::Postgres(pool) => sqlx::query(sql)
                .bind(now.0)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done == 1)
    }
}
