//! Bearer-token rows as both SQL dialects hold them: who a token names, its
//! role and scopes, and a SHA-256 of its secret (the secret itself is never
//! stored).

use super::corrupt;
use crate::error::StoreError;
use crate::ports::TokenRecord;
use sluice_core::aws_identity::ArnRule;
use sluice_core::{Millis, Role};

#[derive(sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub scopes: String,
    pub secret_sha256: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub const TOKEN_COLUMNS: &str =
    "id, name, role, scopes, secret_sha256, created_at, expires_at, revoked_at";

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            role: Role::parse(&r.role).ok_or_else(|| corrupt("role", &r.role))?,
            scopes: serde_json::from_str(&r.scopes).map_err(|_| corrupt("scopes", &r.scopes))?,
            id: r.id,
            name: r.name,
            secret_sha256: r.secret_sha256,
            created_at: Millis(r.created_at),
            expires_at: r.expires_at.map(Millis),
            revoked_at: r.revoked_at.map(Millis),
        })
    }
}

/// The token insert both dialects accept (`$n` parameters).
pub const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, name, role, scopes, secret_sha256, \
     created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING";

pub const REVOKE_TOKEN: &str =
    "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL";

#[derive(sqlx::FromRow)]
pub struct AwsPrincipalRow {
    pub pattern: String,
    pub role: String,
    pub scopes: String,
}

impl TryFrom<AwsPrincipalRow> for ArnRule {
    type Error = StoreError;
    fn try_from(r: AwsPrincipalRow) -> Result<ArnRule, StoreError> {
        Ok(ArnRule {
            role: Role::parse(&r.role).ok_or_else(|| corrupt("role", &r.role))?,
            scopes: serde_json::from_str(&r.scopes).map_err(|_| corrupt("scopes", &r.scopes))?,
            pattern: r.pattern,
        })
    }
}

pub const SELECT_AWS_PRINCIPALS: &str =
    "SELECT pattern, role, scopes FROM aws_principals ORDER BY pattern";

pub const INSERT_AWS_PRINCIPAL: &str = "INSERT INTO aws_principals (pattern, role, scopes, \
     created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (pattern) DO NOTHING";

pub const DELETE_AWS_PRINCIPAL: &str = "DELETE FROM aws_principals WHERE pattern = $1";

/// Expired IAM-login tokens, oldest first (`$1` before, `$2` the limit;
/// the prefix is `aws_identity::LOGIN_TOKEN_PREFIX`).
pub const PRUNE_LOGINS: &str = "DELETE FROM api_tokens WHERE id IN (SELECT id FROM api_tokens \
     WHERE name LIKE 'aws:%' AND expires_at < $1 ORDER BY expires_at LIMIT $2)";
