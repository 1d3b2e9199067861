"""`with client.hydration(table, container, target, views=...) as h:`
creates a hydration and waits for its read lease, heartbeats that lease
while the job copies, and reports progress under its token.

Leaving the block normally once the hydration is `live` releases its lease:
the hydration is then `completed`, its views stay mapped to the copy, and
compaction waiting for readers can start. Leaving it on an exception, or
before `live`, cancels the hydration (unless it already ended); the lease
ends with it."""

from __future__ import annotations

import threading
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Type

from .errors import ApiError, Conflict, LeaseLost
from .lease import Lease, poll_seconds

if TYPE_CHECKING:
    from .client import Client

FINAL = ("completed", "failed", "cancelled", "superseded", "stale")


class Hydration:
    def __init__(self, client: "Client", *, table: str, container: str, target: str,
                 views: Sequence[str] = (), columns: Optional[Sequence[str]] = None,
                 lag_threshold_snapshots: Optional[int] = None,
                 pin_snapshot_id: Optional[int] = None, lease_ttl: int = 600, wait: float = 300,
                 holder: Optional[str] = None, idempotency_key: Optional[str] = None) -> None:
        self._client = client
        self.request: Dict[str, Any] = {
            "table": table, "container": container, "target": target, "views": list(views),
            "lease_ttl_seconds": lease_ttl, "holder": holder or client.holder,
            "idempotency_key": idempotency_key or f"py-{uuid.uuid4()}",
        }
        for key, value in (("columns", list(columns) if columns is not None else None),
                           ("lag_threshold_snapshots", lag_threshold_snapshots),
                           ("pin_snapshot_id", pin_snapshot_id)):
            if value is not None:
                self.request[key] = value
        self.lease = Lease(client, table, "read", ttl=lease_ttl, wait=wait)
        self.body: Dict[str, Any] = {}

    @property
    def id(self) -> str:
        return str(self.body.get("id", ""))

    @property
    def state(self) -> str:
        return str(self.body.get("state", ""))

    @property
    def pin_snapshot_id(self) -> Optional[int]:
        """The snapshot to copy first (the lease's pin when it was granted)."""
        return self.lease.pin_snapshot_id

    @property
    def lost(self) -> threading.Event:
        return self.lease.lost

    def check(self) -> None:
        self.lease.check()

    def __enter__(self) -> "Hydration":
        self.start()
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        if error is None and self.state == "live" and not self.lost.is_set():
            self.lease.release()
            self.refresh()
            return
        # The lease belongs to the hydration: cancelling ends both.
        self.lease.abandon()
        if self.state not in FINAL and not self.lost.is_set():
            reason = (f"the job failed: {error!r}" if error is not None
                      else "the job ended before the hydration was live")
            self.cancel(reason)

    def start(self) -> "Hydration":
        deadline = time.monotonic() + self.lease.wait
        request = dict(self.request, wait_seconds=poll_seconds(deadline))
        sent = time.monotonic()
        self.body = self._client.call("POST", "/v1/hydrations", request,
                                      timeout=poll_seconds(deadline) + 30)
        lease = self.body.get("lease") or {"lease_id": self.body["lease_id"], "state": "waiting"}
        try:
            self.lease.adopt(lease, deadline, sent)
        except BaseException:
            self.cancel("its lease was not granted in time")
            raise
        return self

    def progress(self, *, phase: str, snapshot_id: int, rows_copied: Optional[int] = None,
                 rows_total: Optional[int] = None) -> Dict[str, Any]:
        """Report what is in the container now: `phase` "snapshot" (copying
        the pinned snapshot) or "catching_up" (applying later ones), and the
        snapshot applied. The answer is the hydration with state and lag."""
        self.check()
        body: Dict[str, Any] = {"token": self.lease.token, "phase": phase,
                                "snapshot_id": snapshot_id}
        if rows_copied is not None:
            body["rows_copied"] = rows_copied
        if rows_total is not None:
            body["rows_total"] = rows_total
        try:
            self.body = self._client.call("POST", f"/v1/hydrations/{self.id}/progress", body)
        except Conflict as e:
            if e.type in ("stale_token", "hydration_ended", "lease_expired", "lease_revoked",
                          "lease_released", "lease_cancelled"):
                self.lease.mark_lost(e.type, e)
                raise LeaseLost(f"hydration {self.id}", e.type, e) from e
            raise
        return self.body

    def refresh(self) -> Dict[str, Any]:
        """The hydration as sluice holds it now (state, progress, lag)."""
        self.body = self._client.call("GET", f"/v1/hydrations/{self.id}")
        return self.body

    def cancel(self, reason: str) -> None:
        try:
            self.body = self._client.call("POST", f"/v1/hydrations/{self.id}/cancel",
                                          {"reason": reason})
        except ApiError as e:
            if e.type != "hydration_ended":
                raise
