"""Every error the client raises: one base class, and the server's error
`type` (`stale_token`, `table_not_found`, ...) on each answer it refused."""

from __future__ import annotations

from typing import Any, Dict, Optional


class SluiceError(Exception):
    """Base of every error this client raises."""


class ConnectionFailed(SluiceError):
    """sluice could not be reached (after the retries)."""


class ApiError(SluiceError):
    """sluice answered with an error: its HTTP status and JSON error body.

    `type` is the machine-readable error type of the body
    (`{"error": {"type": ..., "message": ...}}`)."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status = status
        self.body = body
        self.type: str = str(error.get("type") or f"http_{status}")
        self.message: str = str(error.get("message") or "")
        # The `Retry-After` header of a 429 or 503, in seconds.
        self.retry_after: Optional[float] = None
        super().__init__(f"{status} {self.type}: {self.message}")

    @property
    def details(self) -> Dict[str, Any]:
        """The error body's other fields (e.g. the open batch of `batch_open`)."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if not isinstance(error, dict):
            return {}
        return {k: v for k, v in error.items() if k not in ("type", "message")}


class BadRequest(ApiError):
    """400 or 422: the request itself is wrong; retrying will not help."""


class Unauthorized(ApiError):
    """401: no token, or one sluice does not accept."""


class Forbidden(ApiError):
    """403: the token's role or scopes do not allow this."""


class NotFound(ApiError):
    """404: no such table, stream, lease, hydration, job or run."""


class Conflict(ApiError):
    """409: the state does not allow it (stale token, batch open, ...)."""


class Unavailable(ApiError):
    """503 or 429 still answered after the retries."""


def api_error(status: int, body: Any) -> ApiError:
    """The typed exception for an error answer."""
    kind = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
            409: Conflict, 422: BadRequest, 429: Unavailable, 503: Unavailable}.get(status, ApiError)
    return kind(status, body)


class LeaseTimeout(SluiceError):
    """The lease (or a hydration's lease, or a batch) was not granted
    within `wait`; the block was never entered and nothing is held."""


class Lost(SluiceError):
    """What the block held is gone: its work must not be made visible.

    `reason` says why (the server's error type, or that sluice could not be
    reached before the TTL ran out)."""

    def __init__(self, what: str, reason: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(f"{what} lost: {reason}")
        self.reason = reason
        self.cause = cause


class LeaseLost(Lost):
    """The lease ended while it was held (expired, revoked, released)."""


class SessionLost(Lost):
    """The run's session of a hydration is over (detached, its TTL ran out,
    another run attached, or the hydration ended): it must stop writing."""


class BatchLost(Lost):
    """The batch is no longer this run's (expired, failed, or taken over)."""
