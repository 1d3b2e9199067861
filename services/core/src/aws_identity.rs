//! IAM authentication's rules (as HashiCorp Vault's AWS IAM method): a
//! caller signs an `sts:GetCallerIdentity` request with its AWS credentials,
//! including a header that names this sluice deployment, and hands the
//! signed request to sluice, which forwards it to STS and learns the
//! caller's ARN from the answer. Here: which signed requests are worth
//! forwarding, and which sluice principal rule an ARN falls under.
//!
//! STS checks the signature itself; sluice checks what STS does not know
//! to check (that the request was made for this deployment, and recently)
//! and what it must not forward (any other action).

use crate::{Millis, Role};

/// The header that names the deployment a request was signed for: without
/// it among the signed headers, a request signed for another service that
/// trusts IAM could be replayed here.
pub const SERVER_ID_HEADER: &str = "x-sluice-server-id";

/// The names of tokens minted by IAM logins start with this (and no other
/// token's may): the principal is what follows, up to a `#`.
pub const LOGIN_TOKEN_PREFIX: &str = "aws:";

/// How far a signature's `X-Amz-Date` may be from sluice's clock, either
/// way. STS accepts 15 minutes; a request is signed just before it is sent,
/// so sluice allows less.
pub const SIGNATURE_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The one request body sluice forwards.
const ACTION: &str = "GetCallerIdentity";
const VERSION: &str = "2011-06-15";

/// A signed request, as the caller would have sent it to STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: String,
    /// Header names in any case; a name may appear once.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Why a signed request is refused before it reaches STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a signed GetCallerIdentity request at all.
    Malformed(String),
    /// Signed for another deployment (or for none).
    WrongServer,
    /// Signed too long ago, or in the future, by sluice's clock.
    Expired,
}

impl SignedRequest {
    fn header(&self, name: &str) -> Result<&str, Refusal> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (Some((_, value)), None) => Ok(value.trim()),
            (None, _) => Err(Refusal::Malformed(format!("no {name} header"))),
            (Some(_), Some(_)) => Err(Refusal::Malformed(format!("two {name} headers"))),
        }
    }

    /// Whether sluice should forward this request to STS: a SigV4-signed
    /// POST of GetCallerIdentity and nothing else, signed for `server_id`
    /// (the header signed, so STS vouches for it) within the window.
    pub fn check(&self, server_id: &str, now: Millis) -> Result<(), Refusal> {
        if !self.method.eq_ignore_ascii_case("POST") {
            return Err(Refusal::Malformed("the method must be POST".into()));
        }
        // What cannot be sent as an HTTP header is refused here, not found
        // out when forwarding it fails.
        let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        for (name, value) in &self.headers {
            if name.is_empty() || !name.chars().all(token_char) {
                return Err(Refusal::Malformed(format!(
                    "`{}` is not a header name",
                    name.escape_debug()
                )));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(Refusal::Malformed(format!(
                    "header {name} holds a control character"
                )));
            }
        }
        let mut fields: Vec<(&str, &str)> = self
            .body
            .split('&')
            .filter(|f| !f.is_empty())
            .map(|f| f.split_once('=').unwrap_or((f, "")))
            .collect();
        fields.sort_unstable();
        if fields != [("Action", ACTION), ("Version", VERSION)] {
            return Err(Refusal::Malformed(format!(
                "the body must be Action={ACTION}&Version={VERSION}"
            )));
        }
        let authorization = self.header("authorization")?;
        let signed = authorization
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .and_then(|rest| {
                rest.split(',')
                    .map(str::trim)
                    .find_map(|part| part.strip_prefix("SignedHeaders="))
            })
            .ok_or_else(|| Refusal::Malformed("not signed with AWS4-HMAC-SHA256".into()))?;
        let signed: Vec<&str> = signed.split(';').collect();
        for needed in ["host", "x-amz-date", SERVER_ID_HEADER] {
            if !signed.contains(&needed) {
                return Err(if needed == SERVER_ID_HEADER {
                    Refusal::WrongServer
                } else {
                    Refusal::Malformed(format!("{needed} is not a signed header"))
                });
            }
        }
        if self.header(SERVER_ID_HEADER)? != server_id {
            return Err(Refusal::WrongServer);
        }
        let signed_at = amz_date(self.header("x-amz-date")?)
            .ok_or_else(|| Refusal::Malformed("X-Amz-Date is not YYYYMMDDTHHMMSSZ".into()))?;
        if (now.0 - signed_at.0).abs() > SIGNATURE_WINDOW_MS {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

/// SigV4's `20261203T141500Z`.
fn amz_date(text: &str) -> Option<Millis> {
    let stamp = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", text)
        .ok()?
        .to_datetime()
        .ok()?;
    let at = stamp.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(Millis(at.timestamp().as_millisecond()))
}

/// The ARN rules match: an assumed role's session ARN
/// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, what a Glue job's
/// credentials answer) becomes its role's
/// (`arn:aws:iam::ACCOUNT:role/ROLE`); users and roles stay as they are.
/// A role's path is not in a session ARN, so rules match roles by name.
pub fn rule_arn(caller: &str) -> Option<String> {
    let mut parts = caller.splitn(6, ':');
    let (arn, partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn != "arn" || account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match service {
        "sts" => {
            let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
            (!role.is_empty()).then(|| format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        "iam" if resource.starts_with("role/") || resource.starts_with("user/") => {
            Some(caller.to_owned())
        }
        _ => None,
    }
}

/// A configured mapping: identities whose ARN matches `pattern` (`*` any
/// run of characters, `?` one) become principals with this role and scopes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArnRule {
    pub pattern: String,
    pub role: Role,
    pub scopes: Vec<String>,
}

/// IAM's wildcard match.
pub fn matches(pattern: &str, arn: &str) -> bool {
    let (p, a): (Vec<char>, Vec<char>) = (pattern.chars().collect(), arn.chars().collect());
    // The classic greedy match with one backtrack point: linear in practice.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < a.len() {
        if i < p.len() && (p[i] == '?' || p[i] == a[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// The rule a caller falls under: of those that match its rule ARN, the
/// most specific (the most characters that are not wildcards), so that
/// `...:role/glue-ingest-sales` can narrow `...:role/glue-ingest-*`; of
/// equally specific ones, the first.
pub fn pick<'a>(rules: &'a [ArnRule], caller: &str) -> Option<&'a ArnRule> {
    let arn = rule_arn(caller)?;
    let literal = |r: &ArnRule| {
        r.pattern
            .chars()
            .filter(|c| !matches!(c, '*' | '?'))
            .count()
    };
    rules
        .iter()
        .filter(|r| matches(&r.pattern, &arn))
        .fold(None, |best: Option<&ArnRule>, r| match best {
            Some(b) if literal(b) >= literal(r) => Some(b),
            _ => Some(r),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = Millis(1_796_307_300_000); // 2026-12-03T14:15:00Z

    fn request(date: &str, server: &str, signed: &str) -> SignedRequest {
        SignedRequest {
            method: "POST".into(),
            headers: vec![
                ("Host".into(), "sts.amazonaws.com".into()),
                ("X-Amz-Date".into(), date.into()),
                ("X-Sluice-Server-Id".into(), server.into()),
                (
                    "Authorization".into(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential=AKIA/20261203/us-east-1/sts/aws4_request, \
                         SignedHeaders={signed}, Signature=abc"
                    ),
                ),
            ],
            body: "Action=GetCallerIdentity&Version=2011-06-15".into(),
        }
    }

    const SIGNED: &str = "content-type;host;x-amz-date;x-sluice-server-id";

    #[test]
    fn a_fresh_request_signed_for_this_server_is_forwarded() {
        assert_eq!(amz_date("20261203T141500Z"), Some(NOW));
        assert_eq!(
            request("20261203T141500Z", "prod", SIGNED).check("prod", NOW),
            Ok(())
        );
        // Either side of the window, to the second.
        assert_eq!(
            request("20261203T141000Z", "prod", SIGNED).check("prod", NOW),
            Ok(())
        );
        assert_eq!(
            request("20261203T142000Z", "prod", SIGNED).check("prod", NOW),
            Ok(())
        );
    }

    #[test]
    fn another_servers_or_an_unsigned_server_header_is_refused() {
        assert_eq!(
            request("20261203T141500Z", "staging", SIGNED).check("prod", NOW),
            Err(Refusal::WrongServer)
        );
        let unsigned = "content-type;host;x-amz-date";
        assert_eq!(
            request("20261203T141500Z", "prod", unsigned).check("prod", NOW),
            Err(Refusal::WrongServer)
        );
    }

    #[test]
    fn an_old_or_future_signature_is_refused() {
        for date in ["20261203T140959Z", "20261203T142001Z", "20251203T141500Z"] {
            assert_eq!(
                request(date, "prod", SIGNED).check("prod", NOW),
                Err(Refusal::Expired),
                "{date}"
            );
        }
    }

    #[test]
    fn anything_but_a_signed_get_caller_identity_is_malformed() {
        let good = request("20261203T141500Z", "prod", SIGNED);
        let mut cases = Vec::new();
        let mut r = good.clone();
        r.body = "Action=AssumeRole&Version=2011-06-15".into();
        cases.push(r);
        let mut r = good.clone();
        r.body.push_str("&RoleArn=x");
        cases.push(r);
        let mut r = good.clone();
        r.method = "GET".into();
        cases.push(r);
        let mut r = good.clone();
        r.headers.retain(|(n, _)| n != "Authorization");
        cases.push(r);
        let mut r = good.clone();
        r.headers.push(("x-sluice-server-id".into(), "prod".into()));
        cases.push(r);
        let mut r = good.clone();
        r.headers[1].1 = "yesterday".into();
        cases.push(r);
        cases.push(request(
            "20261203T141500Z",
            "prod",
            "host;x-sluice-server-id",
        ));
        for r in cases {
            assert!(
                matches!(r.check("prod", NOW), Err(Refusal::Malformed(_))),
                "{r:?}"
            );
        }
        // The body's fields may come in either order.
        let mut r = good;
        r.body = "Version=2011-06-15&Action=GetCallerIdentity".into();
        assert_eq!(r.check("prod", NOW), Ok(()));
    }

    #[test]
    fn an_assumed_role_session_is_matched_as_its_role() {
        assert_eq!(
            rule_arn("arn:aws:sts::123456789012:assumed-role/glue-ingest-sales/jr_1").as_deref(),
            Some("arn:aws:iam::123456789012:role/glue-ingest-sales")
        );
        assert_eq!(
            rule_arn("arn:aws:iam::123456789012:user/ops").as_deref(),
            Some("arn:aws:iam::123456789012:user/ops")
        );
        for odd in [
            "arn:aws:sts::123456789012:federated-user/x",
            "arn:aws:s3:::bucket",
            "arn:aws:sts::12345678901x:assumed-role/r/s",
            "not-an-arn",
        ] {
            assert_eq!(rule_arn(odd), None, "{odd}");
        }
    }

    #[test]
    fn the_most_specific_matching_rule_wins() {
        let rule = |pattern: &str, role| ArnRule {
            pattern: pattern.into(),
            role,
            scopes: vec![],
        };
        let rules = [
            rule("arn:aws:iam::*:role/glue-ingest-*", Role::Job),
            rule(
                "arn:aws:iam::123456789012:role/glue-ingest-sales",
                Role::Scheduler,
            ),
            rule("arn:aws:iam::123456789012:user/*", Role::Operator),
        ];
        let session = |role: &str| format!("arn:aws:sts::123456789012:assumed-role/{role}/jr_1");
        assert_eq!(
            pick(&rules, &session("glue-ingest-hr")).map(|r| r.role),
            Some(Role::Job)
        );
        assert_eq!(
            pick(&rules, &session("glue-ingest-sales")).map(|r| r.role),
            Some(Role::Scheduler)
        );
        assert_eq!(pick(&rules, &session("other")), None);
        assert_eq!(
            pick(&rules, "arn:aws:iam::123456789012:user/ops").map(|r| r.role),
            Some(Role::Operator)
        );
        assert_eq!(pick(&rules, "arn:aws:iam::999999999999:user/ops"), None);
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(matches("*", ""));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*:role/x", "arn:aws:iam::1:role/x"));
        assert!(!matches("*:role/x", "arn:aws:iam::1:role/xy"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("abc", "abcd"));
    }
}
