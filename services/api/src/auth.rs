//! Authentication (bearer tokens) and authorization (roles, scopes).
//!
//! A token reads `sluice_<id>_<secret>`: the id finds the stored record, the
//! secret is checked against its SHA-256 in constant time. Validated
//! records are cached for a few seconds, so a revocation takes effect
//! everywhere within `CACHE_FOR`.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sluice_core::{Millis, Permission, Principal, Role, StreamName, TableName};
use sluice_store::{TokenRecord, Tokens};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

const PREFIX: &str = "sluice_";
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Routes anyone may call: liveness, readiness, the spec, metrics (and
/// the dashboard's pages, which hold no data).
/// And IAM authentication's login, whose signed request is the credential.
const PUBLIC: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/metrics",
    crate::routes::aws_auth::PATH,
];

pub struct Authenticator {
    tokens: Tokens,
    required: bool,
    cache: Mutex<HashMap<String, (Arc<TokenRecord>, Instant)>>,
}

impl Authenticator {
    pub fn new(tokens: Tokens, required: bool) -> Authenticator {
        Authenticator {
            tokens,
            required,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The check a request presenting `header` would get now (a revocation
    /// or expiry seen within `CACHE_FOR`): for what outlives the check of
    /// its request, an open event feed.
    pub async fn recheck(&self, header: Option<&str>) -> Result<(), ApiError> {
        self.principal(header).await.map(|_| ())
    }

    async fn principal(&self, header: Option<&str>) -> Result<Arc<Principal>, ApiError> {
        let raw = header.ok_or_else(|| {
            unauthenticated("missing_token", "send `Authorization: Bearer <token>`")
        })?;
        // The scheme is case-insensitive (RFC 7235); the token is not.
        let token = raw
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or_else(|| {
                unauthenticated(
                    "invalid_token",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        let (id, secret) = split(token.trim())
            .ok_or_else(|| unauthenticated("invalid_token", "malformed token"))?;
        let record = self.record(id).await?;
        let presented = sha256_hex(secret);
        let matches: bool = presented
            .as_bytes()
            .ct_eq(record.secret_sha256.as_bytes())
            .into();
        if !matches {
            return Err(unauthenticated("invalid_token", "unknown token"));
        }
        if record.revoked_at.is_some() {
            return Err(unauthenticated("token_revoked", "this token was revoked"));
        }
        if record
            .expires_at
            .is_some_and(|at| at <= sluice_store::system_now())
        {
            return Err(unauthenticated("token_expired", "this token has expired"));
        }
        Ok(Arc::new(Principal {
            name: principal_name(&record.name).to_owned(),
            role: record.role,
            scopes: record.scopes.clone(),
        }))
    }

    async fn record(&self, id: &str) -> Result<Arc<TokenRecord>, ApiError> {
        if let Some((record, at)) = self.cache.lock().expect("token cache").get(id) {
            if at.elapsed() < CACHE_FOR {
                return Ok(record.clone());
            }
        }
        let record = Arc::new(
            self.tokens
                .find(id)
                .await?
                .ok_or_else(|| unauthenticated("invalid_token", "unknown token"))?,
        );
        let mut cache = self.cache.lock().expect("token cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(id.to_owned(), (record.clone(), Instant::now()));
        Ok(record)
    }
}

/// The names of tokens from IAM logins start with this (and no other
/// token's may).
pub const AWS_LOGIN_PREFIX: &str = sluice_core::aws_identity::LOGIN_TOKEN_PREFIX;

/// The principal a token acts as. A token from an IAM login is named
/// `aws:ARN#LOGIN`: every login of one identity (a Glue run's session,
/// renewing its token) is the same principal, so it still owns the leases
/// and batches it took with an earlier token.
pub fn principal_name(token_name: &str) -> &str {
    match token_name.strip_prefix(AWS_LOGIN_PREFIX) {
        Some(_) => token_name
            .rsplit_once('#')
            .map_or(token_name, |(name, _)| name),
        None => token_name,
    }
}

/// A 401 with the error's type.
pub(crate) fn unauthenticated(kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, kind, message)
}

fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// A new token: the string to hand out once, and the record to store.
pub fn new_token(
    name: &str,
    role: Role,
    scopes: Vec<String>,
    expires_at: Option<Millis>,
    now: Millis,
) -> (String, TokenRecord) {
    // v4 UUIDs come from the OS's CSPRNG: 122 random bits each.
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let token = format!("{PREFIX}{id}_{secret}");
    let record = imported_token(&token, name, role, scopes, expires_at, now)
        .expect("a new token has the shape of one");
    (token, record)
}

/// The record of a token made elsewhere (a deployment's secret, handed to
/// `sluice token import`), or `None` unless it is `sluice_<id>_<secret>`
/// with a 16-character id and a secret of at least 32 characters, both
/// letters and digits (so that it is as hard to guess as one sluice makes).
pub fn imported_token(
    token: &str,
    name: &str,
    role: Role,
    scopes: Vec<String>,
    expires_at: Option<Millis>,
    now: Millis,
) -> Option<TokenRecord> {
    let (id, secret) = split(token)?;
    let alphanumeric = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (id.len() == 16 && secret.len() >= 32 && alphanumeric(id) && alphanumeric(secret)).then(|| {
        TokenRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            role,
            scopes,
            secret_sha256: sha256_hex(secret),
            created_at: now,
            expires_at,
            revoked_at: None,
        }
    })
}

/// Middleware: find the caller of every non-public route.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if PUBLIC.contains(&req.uri().path()) || crate::dashboard::is_page(req.uri().path()) {
        return next.run(req).await;
    }
    let principal = if app.auth.required() {
        let mut headers = req
            .headers()
            .get_all(axum::http::header::AUTHORIZATION)
            .iter();
        let header = headers.next().and_then(|v| v.to_str().ok());
        // Two credentials: which one a proxy or the server would honour is
        // a guess, so refuse rather than pick one.
        if headers.next().is_some() {
            return ApiError::bad_request(
                "duplicate_authorization",
                "send one Authorization header, not several",
            )
            .into_response();
        }
        match app.auth.principal(header).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        }
    } else {
        ANONYMOUS.clone()
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

static ANONYMOUS: std::sync::LazyLock<Arc<Principal>> =
    std::sync::LazyLock::new(|| Arc::new(Principal::anonymous()));

/// The authenticated caller, in a handler.
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| unauthenticated("missing_token", "send `Authorization: Bearer <token>`"))
    }
}

impl Caller {
    /// 403 unless the caller's role grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.0.may(permission) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("role `{}` may not do this", self.0.role.as_str()),
            ))
        }
    }

    /// 403 unless `table` is within the caller's scopes.
    pub fn require_table(&self, table: &TableName) -> Result<(), ApiError> {
        if self.0.sees(table.as_str()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "out_of_scope",
                format!("table `{table}` is outside this token's scopes"),
            ))
        }
    }

    /// Whether the caller sees what belongs to `table`, if anything: what
    /// belongs to no table (a job defined without one, its runs) is seen
    /// only by unscoped callers.
    pub fn sees(&self, table: Option<&TableName>) -> bool {
        match table {
            Some(table) => self.0.sees(table.as_str()),
            None => !self.scoped(),
        }
    }

    /// 403 `out_of_scope` unless the caller sees what belongs to `table`
    /// (`what` names it in the message).
    pub fn require_seen(&self, table: Option<&TableName>, what: &str) -> Result<(), ApiError> {
        if self.sees(table) {
            return Ok(());
        }
        let message = match table {
            Some(table) => format!("{what} is on table `{table}`, outside this token's scopes"),
            None => format!("{what} names no table: only a token without scopes may act on it"),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            message,
        ))
    }

    /// Both checks at once.
    pub fn require_on(&self, permission: Permission, table: &TableName) -> Result<(), ApiError> {
        self.require(permission)?;
        self.require_table(table)
    }

    /// The role check, and `stream` within the caller's scopes (scopes are
    /// name prefixes of tables and streams alike).
    pub fn require_stream(
        &self,
        permission: Permission,
        stream: &StreamName,
    ) -> Result<(), ApiError> {
        self.require(permission)?;
        if self.0.sees(stream.as_str()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "out_of_scope",
                format!("stream `{stream}` is outside this token's scopes"),
            ))
        }
    }

    pub fn actor(&self) -> Option<String> {
        Some(self.0.name.clone())
    }

    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    pub fn scoped(&self) -> bool {
        !self.0.scopes.is_empty()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_login_of_one_aws_identity_is_one_principal() {
        let session = "aws:arn:aws:sts::1:assumed-role/r/jr_1";
        assert_eq!(
            super::principal_name(&format!("{session}#0123abcd")),
            session
        );
        assert_eq!(super::principal_name(session), session);
        // Other tokens' names are theirs whole, `#` included.
        assert_eq!(super::principal_name("ci#2"), "ci#2");
    }

    use super::*;

    #[test]
    fn a_new_token_splits_back_into_its_id_and_a_secret_matching_the_hash() {
        let (token, record) = new_token("ci", Role::Job, vec![], None, Millis(0));
        let (id, secret) = split(&token).unwrap();
        assert_eq!(id, record.id);
        assert_eq!(sha256_hex(secret), record.secret_sha256);
        assert!(!record.secret_sha256.contains(secret));
        let (other, _) = new_token("ci", Role::Job, vec![], None, Millis(0));
        assert_ne!(token, other);
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        for bad in [
            "",
            "sluice_",
            "sluice_abc",
            "sluice__secret",
            "sluice_id_",
            "other_id_secret",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }
}
