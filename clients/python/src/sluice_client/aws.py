"""Proof of a job's AWS identity, for sluice's IAM authentication.

A Glue job already runs as an IAM role. Instead of a static token in its
arguments, it signs an `sts:GetCallerIdentity` request with that role's
credentials, including the `X-Sluice-Server-Id` header that names the
sluice deployment, and hands the signed request (not the credentials) to
sluice, which forwards it to STS to learn who signed it. The request is
good for one deployment, one login and a few minutes only.

`Client(url, aws=AwsLogin(server_id, region))` logs in by itself and logs
in again before the token expires (and once more if sluice refuses it).

Signing uses botocore when it is installed (as in Glue: its credential
chain finds the job's role), else a standard-library SigV4 with the
credentials from the environment. Both give the same signature.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import importlib
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

from .errors import ApiError
from .transport import Retry, Transport

SERVER_ID_HEADER = "X-Sluice-Server-Id"
NONCE_HEADER = "X-Sluice-Nonce"
BODY = "Action=GetCallerIdentity&Version=2011-06-15"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: Optional[str] = None


def _botocore() -> Any:
    try:
        return importlib.import_module("botocore.session")
    except ImportError:
        return None


def credentials_from_environment() -> Credentials:
    """botocore's chain when botocore is there (environment, profile, the
    Glue job's or the instance's role), else AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN."""
    session = _botocore()
    if session is not None:
        found = session.get_session().get_credentials()
        if found is not None:
            frozen = found.get_frozen_credentials()
            return Credentials(frozen.access_key, frozen.secret_key, frozen.token)
    try:
        return Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                           os.environ.get("AWS_SESSION_TOKEN"))
    except KeyError as missing:
        raise LookupError(f"no AWS credentials: {missing.args[0]} is not set") from None


def sts_endpoint(region: str) -> str:
    """STS's regional endpoint (the global one signs for us-east-1 only)."""
    return f"https://sts.{region}.amazonaws.com/"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_sigv4(url: str, headers: Dict[str, str], body: str, credentials: Credentials,
               region: str, now: datetime.datetime) -> Dict[str, str]:
    """SigV4 for an STS POST: `headers` plus X-Amz-Date, the session token
    and Authorization, every header signed."""
    stamp = now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parts = urlsplit(url)
    out = dict(headers)
    out["Host"] = parts.netloc
    out["X-Amz-Date"] = stamp
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    canonical = {k.lower(): " ".join(v.split()) for k, v in out.items()}
    names = sorted(canonical)
    request = "\n".join([
        "POST", parts.path or "/", parts.query,
        "".join(f"{n}:{canonical[n]}\n" for n in names),
        ";".join(names), _sha256(body),
    ])
    scope = f"{stamp[:8]}/{region}/sts/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, _sha256(request)])
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (stamp[:8], region, "sts", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return out


def _sign_botocore(url: str, headers: Dict[str, str], body: str, credentials: Credentials,
                   region: str) -> Optional[Dict[str, str]]:
    try:
        auth = importlib.import_module("botocore.auth")
        awsrequest = importlib.import_module("botocore.awsrequest")
        botocore_credentials = importlib.import_module("botocore.credentials")
    except ImportError:
        return None
    request = awsrequest.AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    creds = botocore_credentials.Credentials(credentials.access_key, credentials.secret_key,
                                             credentials.token)
    auth.SigV4Auth(creds, "sts", region).add_auth(request)
    signed: Dict[str, str] = {k: str(v) for k, v in request.headers.items()}
    signed["Host"] = urlsplit(url).netloc
    return signed


def signed_login(server_id: str, region: str, credentials: Optional[Credentials] = None,
                 endpoint: Optional[str] = None) -> Dict[str, Any]:
    """The body of sluice's `POST /v1/auth/aws`: a GetCallerIdentity request
    signed now for the deployment `server_id`."""
    credentials = credentials or credentials_from_environment()
    url = endpoint or sts_endpoint(region)
    # A signed nonce makes every login request unique, so that two logins
    # signed in the same second with the same credentials are not taken
    # by sluice for a replay of one.
    headers = {"Content-Type": CONTENT_TYPE, SERVER_ID_HEADER: server_id,
               NONCE_HEADER: secrets.token_hex(16)}
    signed = _sign_botocore(url, headers, BODY, credentials, region)
    if signed is None:
        signed = sign_sigv4(url, headers, BODY, credentials, region,
                            datetime.datetime.now(datetime.timezone.utc))
    return {"method": "POST", "url": url, "headers": signed, "body": BODY}


class AwsLogin:
    """Tokens from sluice's IAM login (`POST /v1/auth/aws`), as a client's
    token source: logged in at first use, and again `renew_before` seconds
    before the token expires. `credentials` default to the environment's
    (botocore's chain when it is installed: the Glue job's role)."""

    def __init__(self, server_id: str, region: str, *, sts_endpoint: Optional[str] = None,
                 credentials: Optional[Credentials] = None, renew_before: float = 300.0) -> None:
        self.server_id = server_id
        self.region = region
        self.sts_endpoint = sts_endpoint
        self.credentials = credentials
        self.renew_before = renew_before
        self.logins = 0
        self.answer: Optional[Dict[str, Any]] = None
        self._transport: Optional[Transport] = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def bind(self, url: str, timeout: float, retry: Retry) -> "AwsLogin":
        # The login call itself carries no token.
        self._transport = Transport(url, None, timeout, retry)
        return self

    def token(self) -> str:
        with self._lock:
            if self.answer is None or time.time() >= self._renew_at:
                self._login()
            assert self.answer is not None
            return str(self.answer["token"])

    def invalidate(self) -> None:
        with self._lock:
            self.answer = None

    def _login(self) -> None:
        if self._transport is None:
            raise RuntimeError("an AwsLogin logs in for a Client: pass it as Client(url, aws=...)")
        answer = None
        for last in (False, True):
            request = signed_login(self.server_id, self.region, self.credentials, self.sts_endpoint)
            try:
                answer = self._transport.call("POST", "/v1/auth/aws", request)
                break
            except ApiError as e:
                # sluice takes each signed request once: a retry whose first
                # try logged in (its answer lost) is refused; sign anew.
                if e.type != "login_replayed" or last:
                    raise
        assert answer is not None
        expires = datetime.datetime.fromisoformat(str(answer["expires_at"]).replace("Z", "+00:00"))
        # Early by renew_before, but never past half the token's life.
        left = expires.timestamp() - time.time()
        self.answer, self._renew_at = answer, time.time() + max(left - self.renew_before, left / 2)
        self.logins += 1
