"""HTTP to sluice with the standard library: JSON in and out, the bearer
token, and retries with capped exponential back-off and full jitter on what
can pass (connection errors, 503, 429), never on another 4xx."""

from __future__ import annotations

import errno
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Protocol, Union

from .errors import ApiError, ConnectionFailed, api_error

Query = Mapping[str, Union[str, int, float, bool, None]]


@dataclass(frozen=True)
class Retry:
    """How long a call keeps trying: up to `attempts` tries within
    `seconds`, sleeping a random time up to `base * 2**n` (at most `cap`)
    between them, or what a `Retry-After` header asks for."""

    attempts: int = 8
    seconds: float = 60.0
    base: float = 0.2
    cap: float = 5.0

    def pause(self, attempt: int, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap)
        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))


class TokenSource(Protocol):
    """Where a bearer token comes from when it is not fixed: sluice's IAM
    login (`aws.AwsLogin`), renewed before it expires."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class Transport:
    def __init__(self, url: str, token: Union[str, TokenSource, None], timeout: float,
                 retry: Retry) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retry = retry

    def call(self, method: str, path: str, body: Any = None, query: Optional[Query] = None,
             *, idempotent: bool = True, timeout: Optional[float] = None,
             retry: Optional[Retry] = None) -> Any:
        """The answer's JSON body, or a typed error.

        `idempotent=False` retries a connection error only when the request
        cannot have reached sluice (refused), so it never runs twice."""
        policy = retry or self.retry
        deadline = time.monotonic() + policy.seconds
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            try:
                return self._once(method, path, body, query, timeout or self.timeout)
            except ApiError as e:
                # A token from a login that sluice no longer takes (revoked,
                # or expired early by its clock): log in again, once.
                if e.status == 401 and not renewed and not isinstance(self.token, (str, type(None))):
                    self.token.invalidate()
                    renewed = True
                    continue
                if e.status not in (429, 503) or not _more(policy, attempt, deadline):
                    raise
                pause = policy.pause(attempt, e.retry_after)
            except ConnectionFailed as e:
                sent = not isinstance(e.__cause__, ConnectionRefusedError)
                if (sent and not idempotent) or not _more(policy, attempt, deadline):
                    raise
                pause = policy.pause(attempt)
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def _once(self, method: str, path: str, body: Any, query: Optional[Query],
              timeout: float) -> Any:
        url = self.url + path
        if query:
            pairs = {k: _text(v) for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = self.token if isinstance(self.token, (str, type(None))) else self.token.token()
        if token:
            request.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            error = api_error(e.code, _json(raw, e.code))
            error.retry_after = _seconds(e.headers.get("Retry-After"))
            raise error from None
        except urllib.error.URLError as e:
            reason = e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason))
            raise ConnectionFailed(f"{method} {url}: {reason}") from _refused(reason)
        except (http.client.HTTPException, socket.timeout, ConnectionError, OSError) as e:
            # A connection dropped mid-answer (a restart): it may have run.
            raise ConnectionFailed(f"{method} {url}: {e!r}") from e
        return json.loads(raw) if raw else None


def _more(policy: Retry, attempt: int, deadline: float) -> bool:
    return attempt < policy.attempts and time.monotonic() < deadline


def _refused(reason: BaseException) -> BaseException:
    if isinstance(reason, ConnectionRefusedError):
        return reason
    if isinstance(reason, OSError) and reason.errno == errno.ECONNREFUSED:
        return ConnectionRefusedError(*reason.args)
    return reason


def _seconds(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: back off as usual


def _json(raw: bytes, status: int) -> Dict[str, Any]:
    try:
        body = json.loads(raw)
        if isinstance(body, dict):
            return body
    except ValueError:
        pass
    return {"error": {"type": f"http_{status}", "message": raw.decode(errors="replace")[:500]}}


def _text(value: Union[str, int, float, bool]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
