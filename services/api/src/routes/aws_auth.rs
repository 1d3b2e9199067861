//! IAM authentication: a caller trades a signed `sts:GetCallerIdentity`
//! request for a short-lived sluice token. sluice checks the request
//! (`sluice_core::aws_identity`), forwards it to its configured STS
//! endpoint, reads the caller's ARN from the answer, maps it by the
//! configured rules and mints a token. Every outcome is logged under the
//! `sluice::audit` target.

use crate::auth::unauthenticated;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sluice_core::aws_identity::{self, Refusal, SignedRequest};
use sluice_core::Millis;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The route, public like `/healthz`: the signed request is the credential.
pub const PATH: &str = "/v1/auth/aws";

/// How sluice trades AWS identities for tokens (`[aws_auth]`).
#[derive(Debug, Clone)]
pub struct AwsAuthConfig {
    /// What callers sign in `X-Sluice-Server-Id`: this deployment's name.
    pub server_id: String,
    /// Where signed requests are forwarded (the host they must be signed for).
    pub sts_endpoint: String,
    /// How long a minted token lives.
    pub token_ttl: Duration,
}

/// Most logins forwarded to STS at once by one server: the route is
/// public, so this bounds what anyone who can reach it makes sluice do.
pub const MAX_LOGINS_IN_FLIGHT: usize = 32;

/// Headers sluice does not pass on to STS: the connection's own.
const HOP_BY_HOP: [&str; 5] = [
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "accept-encoding",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// A signed `sts:GetCallerIdentity` request, as the caller would send it
/// to STS (the Python client's `sluice_client.aws.signed_login`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsLoginBody {
    /// `POST`.
    pub method: String,
    /// The STS URL it was signed for; it must be sluice's STS endpoint.
    pub url: String,
    /// Every header, `Authorization` and `X-Sluice-Server-Id` included.
    pub headers: BTreeMap<String, String>,
    /// `Action=GetCallerIdentity&Version=2011-06-15`.
    pub body: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AwsLoginAnswer {
    /// A bearer token for this identity.
    pub token: String,
    /// When it stops working (RFC 3339); log in again before.
    pub expires_at: String,
    pub role: String,
    /// Table-name prefixes it is limited to (empty: every table).
    pub scopes: Vec<String>,
    /// The identity STS vouched for.
    pub arn: String,
    /// The principal's name in the event log.
    pub principal: String,
}

/// Trade a signed GetCallerIdentity request for a sluice token.
///
/// The request must be signed (SigV4) for this deployment: its
/// `X-Sluice-Server-Id` header, among the signed ones, names the server's
/// configured id, and its `X-Amz-Date` is within 5 minutes of the server's
/// clock. sluice forwards it to its STS endpoint; the ARN STS answers
/// (an assumed role's session is matched as its role) is mapped by the
/// rules of `sluice principal create` to a role and scopes.
#[utoipa::path(post, path = "/v1/auth/aws", tag = "operations",
    request_body = AwsLoginBody,
    responses(
        (status = 200, description = "A token for the identity", body = AwsLoginAnswer),
        (status = 400, description = "Not a signed GetCallerIdentity request for this server's STS endpoint (`invalid_aws_request`)", body = ErrorBody),
        (status = 401, description = "Signed for another server (`wrong_server_id`), too old or in the future (`signature_expired`), used to log in already (`login_replayed`), or refused by STS (`aws_identity_refused`)", body = ErrorBody),
        (status = 403, description = "No rule maps the identity (`unknown_aws_identity`)", body = ErrorBody),
        (status = 404, description = "IAM authentication is not configured (`aws_auth_disabled`)", body = ErrorBody),
        (status = 429, description = "Too many logins in flight on this server (`too_many_logins`)", body = ErrorBody),
        (status = 503, description = "STS did not answer (`sts_unavailable`)", body = ErrorBody),
    ))]
async fn login(
    State(app): State<AppState>,
    Json(body): Json<AwsLoginBody>,
) -> Result<axum::Json<AwsLoginAnswer>, ApiError> {
    let config = app.aws_auth.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "aws_auth_disabled",
            "IAM authentication is not configured on this server ([aws_auth] server_id)",
        )
    })?;
    let result = trade(&app, config, body).await;
    match &result {
        Ok(answer) => tracing::info!(target: "sluice::audit", arn = %answer.arn,
            principal = %answer.principal, role = %answer.role, "aws login"),
        Err(error) => tracing::warn!(target: "sluice::audit", kind = error.kind,
            reason = %error.message, "aws login refused"),
    }
    result.map(axum::Json)
}

async fn trade(
    app: &AppState,
    config: &AwsAuthConfig,
    body: AwsLoginBody,
) -> Result<AwsLoginAnswer, ApiError> {
    let now = sluice_store::system_now();
    let invalid = |message: String| ApiError::bad_request("invalid_aws_request", message);
    let request = SignedRequest {
        method: body.method,
        headers: body.headers.into_iter().collect(),
        body: body.body,
    };
    request
        .check(&config.server_id, now)
        .map_err(|refusal| match refusal {
            Refusal::Malformed(message) => invalid(message),
            Refusal::WrongServer => unauthenticated(
                "wrong_server_id",
                "the request was not signed for this server (X-Sluice-Server-Id)",
            ),
            Refusal::Expired => unauthenticated(
                "signature_expired",
                "X-Amz-Date is more than 5 minutes from this server's clock: sign a new request",
            ),
        })?;
    // Forwarded to sluice's own endpoint, never to the URL given: the
    // request must have been signed for it (its Host header).
    let endpoint = reqwest::Url::parse(&config.sts_endpoint)
        .map_err(|_| invalid("the server's STS endpoint is not a URL".into()))?;
    let host = endpoint
        .host_str()
        .map(|h| match endpoint.port() {
            Some(port) => format!("{h}:{port}"),
            None => h.to_owned(),
        })
        .unwrap_or_default();
    let signed_host = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str());
    if signed_host != Some(host.as_str())
        || body.url.trim_end_matches('/') != config.sts_endpoint.trim_end_matches('/')
    {
        return Err(invalid(format!(
            "sign the request for this server's STS endpoint, {} (Host: {host})",
            config.sts_endpoint
        )));
    }
    let _permit = app.sts_permits.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_logins",
            "too many IAM logins are in flight on this server; retry shortly",
        )
    })?;
    let arn = caller_arn(&app.http, &endpoint, &request).await?;
    let rules = app.store.tokens().aws_principals().await?;
    let rule = aws_identity::pick(&rules, &arn).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_aws_identity",
            format!("no principal rule maps `{arn}` (sluice principal create --aws-arn ...)"),
        )
    })?;
    let expires_at = Millis(now.0 + config.token_ttl.as_millis() as i64);
    // The ARN is the principal (in the event log, as the owner of leases);
    // the part after `#` keeps each login's token its own.
    let label: String = arn.chars().take(200).collect();
    let principal = format!("{}{label}", crate::auth::AWS_LOGIN_PREFIX);
    // Each signed request logs in once: the part after `#` is drawn from
    // its signature, and token names are unique, so a request replayed
    // within its 5-minute window (by whoever saw it on its way) finds its
    // name taken.
    let name = format!("{principal}#{}", signature_digest(&request));
    let (token, record) =
        crate::auth::new_token(&name, rule.role, rule.scopes.clone(), Some(expires_at), now);
    if !app.store.tokens().create(&record).await? {
        return Err(unauthenticated(
            "login_replayed",
            "this signed request was used to log in already: sign a new one",
        ));
    }
    Ok(AwsLoginAnswer {
        token,
        expires_at: expires_at.to_rfc3339(),
        role: rule.role.as_str().to_owned(),
        scopes: rule.scopes.clone(),
        arn,
        principal,
    })
}

/// 24 hex digits of the SHA-256 of the request's `Authorization` header
/// (which holds its signature).
fn signature_digest(request: &SignedRequest) -> String {
    use sha2::{Digest, Sha256};
    let authorization = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map_or("", |(_, v)| v.as_str());
    Sha256::digest(authorization.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Forward the request to STS and read the ARN it answers with.
async fn caller_arn(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    request: &SignedRequest,
) -> Result<String, ApiError> {
    let mut forward = client.post(endpoint.clone()).body(request.body.clone());
    for (name, value) in &request.headers {
        if !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
            forward = forward.header(name, value);
        }
    }
    let unavailable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sts_unavailable",
            format!("STS did not answer: {why}"),
        )
    };
    let answer = forward
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let status = answer.status();
    let text = answer
        .text()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if status.is_server_error() {
        return Err(unavailable(format!("{status}")));
    }
    if !status.is_success() {
        let code = element(&text, "Code").unwrap_or("unknown");
        return Err(unauthenticated(
            "aws_identity_refused",
            format!("STS refused the signed request: {code}"),
        ));
    }
    element(&text, "Arn")
        .map(str::to_owned)
        .ok_or_else(|| unavailable("its answer names no Arn".into()))
}

/// The text of the first `<name>` element: STS's answers are small,
/// flat XML.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::element;

    #[test]
    fn the_arn_is_read_from_stss_answer() {
        let xml = "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
            <GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>\
            <UserId>AROA:s</UserId><Account>123456789012</Account></GetCallerIdentityResult>\
            </GetCallerIdentityResponse>";
        assert_eq!(
            element(xml, "Arn"),
            Some("arn:aws:sts::123456789012:assumed-role/r/s")
        );
        assert_eq!(element(xml, "Code"), None);
        assert_eq!(
            element("<Error><Code>SignatureDoesNotMatch</Code></Error>", "Code"),
            Some("SignatureDoesNotMatch")
        );
    }
}
