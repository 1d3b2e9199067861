"""`with client.hydration(table, container, target, views=...) as h:` is one
run of a hydration job. A hydration is the copy of `table` in `container`'s
`target`, not a run: it lives from creation until it is cancelled,
superseded or goes stale, and each run of the job attaches to it as a
session.

Entering the block resumes the copy of (table, container, target) when one
exists (else creates it), attaches this run (`run_id`: the same run id
again, a retried attempt, gets its session back), waits for the read lease
of a copy still in its first hydration, and heartbeats the session while
the block runs. Progress is reported under the session's token.

Leaving the block detaches the run, however it leaves: the copy stays. A
live copy stays mapped and its lag keeps moving between runs (`lagging`
once past its threshold); one in its first hydration keeps its read lease
while no run is attached for up to the lease's TTL. The next run resumes
from `applied_snapshot_id`. `cancel()` ends the copy for good."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Type

from .errors import ApiError, Conflict, LeaseTimeout, NotFound, SessionLost
from .keeper import Keeper
from .lease import poll_seconds

if TYPE_CHECKING:
    from .client import Client

FINAL = ("failed", "cancelled", "superseded", "stale")
# A copy in its first hydration: it holds the table's read lease.
FIRST = ("pending", "snapshot", "catching_up")
# Refusals that mean this run's session is over.
SESSION_OVER = ("session_stale", "session_held", "hydration_ended", "hydration_stale",
                "lease_expired", "lease_revoked", "lease_released", "lease_cancelled")


class Hydration:
    def __init__(self, client: "Client", *, table: str, container: str, target: str,
                 views: Sequence[str] = (), columns: Optional[Sequence[str]] = None,
                 lag_threshold_snapshots: Optional[int] = None,
                 pin_snapshot_id: Optional[int] = None, lease_ttl: int = 600,
                 session_ttl: int = 600, wait: float = 300, holder: Optional[str] = None,
                 run_id: Optional[str] = None) -> None:
        self._client = client
        self.table, self.container, self.target = table, container, target
        self.run_id = run_id or f"py-{uuid.uuid4()}"
        self.wait = wait
        self.session_ttl = session_ttl
        # A retried create of this run (its answer lost) finds the same copy.
        key = hashlib.sha256("\0".join((self.run_id, table, container, target)).encode())
        self.request: Dict[str, Any] = {
            "table": table, "container": container, "target": target, "views": list(views),
            "lease_ttl_seconds": lease_ttl, "holder": holder or client.holder,
            "run_id": self.run_id, "session_ttl_seconds": session_ttl,
            "idempotency_key": f"py-hydration-{key.hexdigest()[:48]}",
        }
        for name, value in (("columns", list(columns) if columns is not None else None),
                            ("lag_threshold_snapshots", lag_threshold_snapshots),
                            ("pin_snapshot_id", pin_snapshot_id)):
            if value is not None:
                self.request[name] = value
        self.body: Dict[str, Any] = {}
        self.token = 0
        self.resumed = False
        self.pin_snapshot_id: Optional[int] = None
        self._keeper = Keeper("session", float(session_ttl), self._beat)
        self._detached = False

    # --- what it is -------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self.body.get("id", ""))

    @property
    def state(self) -> str:
        return str(self.body.get("state", ""))

    @property
    def in_first_hydration(self) -> bool:
        """Still copying its first snapshot or catching up for the first
        time: the copy is not whole yet."""
        return self.state in FIRST

    @property
    def applied_snapshot_id(self) -> Optional[int]:
        """The last snapshot whose data is in the container (where a resumed
        run goes on from); None before the first report."""
        applied = (self.body.get("progress") or {}).get("applied_snapshot_id")
        return int(applied) if applied is not None else None

    @property
    def lost(self) -> threading.Event:
        return self._keeper.lost

    def check(self) -> None:
        """Raise `SessionLost` if this run's session is over."""
        self._keeper.check(SessionLost, f"session of hydration {self.id}")

    # --- the block ----------------------------------------------------------

    def __enter__(self) -> "Hydration":
        self.start()
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        self.detach()
        if error is None and self.lost.is_set():
            self.check()

    def start(self) -> "Hydration":
        """Resume or create the copy, attach this run, and wait for the read
        lease of a copy in its first hydration (`LeaseTimeout` after `wait`
        seconds: the run is detached then, and the copy stays)."""
        deadline = time.monotonic() + self.wait
        sent = time.monotonic()
        existing = self._find()
        if existing is None:
            request = dict(self.request, wait_seconds=poll_seconds(deadline))
            self.body = self._client.call("POST", "/v1/hydrations", request,
                                          timeout=poll_seconds(deadline) + 30)
        else:
            self.resumed = True
            self.body = self._client.call(
                "POST", f"/v1/hydrations/{existing}/attach",
                {"run_id": self.run_id, "ttl_seconds": self.session_ttl})
        session = self.body.get("session") or {}
        self.token = int(session.get("token") or 0)
        self._keeper.start(sent)
        try:
            self._wait_for_lease(deadline)
        except BaseException:
            self.detach()
            raise
        return self

    def progress(self, *, phase: str, snapshot_id: int, rows_copied: Optional[int] = None,
                 rows_total: Optional[int] = None) -> Dict[str, Any]:
        """Report what is in the container now: `phase` "snapshot" (copying
        the pinned snapshot) or "catching_up" (applying later ones; a
        `replace` snapshot may be reported without copying anything), and
        the snapshot applied. The answer is the hydration with state and lag."""
        self.check()
        body: Dict[str, Any] = {"token": self.token, "phase": phase, "snapshot_id": snapshot_id}
        if rows_copied is not None:
            body["rows_copied"] = rows_copied
        if rows_total is not None:
            body["rows_total"] = rows_total
        try:
            self.body = self._client.call("POST", f"/v1/hydrations/{self.id}/progress", body)
        except Conflict as e:
            if e.type in SESSION_OVER:
                self._keeper.mark_lost(e.type, e)
                raise SessionLost(f"session of hydration {self.id}", e.type, e) from e
            raise
        return self.body

    def refresh(self) -> Dict[str, Any]:
        """The hydration as sluice holds it now (state, progress, lag)."""
        self.body = self._client.call("GET", f"/v1/hydrations/{self.id}")
        return self.body

    def detach(self) -> None:
        """End this run's session (safe to repeat): the copy stays."""
        self._keeper.stop()
        if self._detached or not self.id or not self.token:
            return
        self._detached = True
        try:
            self.body = self._client.call("POST", f"/v1/hydrations/{self.id}/detach",
                                          {"token": self.token})
        except (Conflict, NotFound):
            pass  # its session or the copy is gone already: nothing is attached

    def cancel(self, reason: str) -> None:
        """End the copy for good (its views keep their last mapping)."""
        try:
            self.body = self._client.call("POST", f"/v1/hydrations/{self.id}/cancel",
                                          {"reason": reason})
        except ApiError as e:
            if e.type != "hydration_ended":
                raise

    # --- inside -------------------------------------------------------------

    def _find(self) -> Optional[str]:
        """The id of the copy of (table, container, target) that has not
        ended, if there is one."""
        for h in self._client.hydrations(table=self.table, container=self.container):
            if h.get("target") == self.target and h.get("state") not in FINAL:
                return str(h["id"])
        return None

    def _wait_for_lease(self, deadline: float) -> None:
        lease = self.body.get("lease")
        if self.state not in FIRST:
            return
        if lease is None:
            lease = self._client.call("GET", f"/v1/leases/{self.body['lease_id']}")
        while lease.get("state") == "waiting":
            if time.monotonic() >= deadline:
                raise LeaseTimeout(f"the read lease of hydration {self.id} was not granted "
                                   f"within {self.wait:g} s (position {lease.get('position')})")
            lease = self._client.call("GET", f"/v1/leases/{lease['lease_id']}",
                                      query={"wait_seconds": poll_seconds(deadline)},
                                      timeout=poll_seconds(deadline) + 30)
        if lease.get("state") != "granted":
            self._keeper.mark_lost(str(lease.get("state")))
            self.check()
        if lease.get("pin_snapshot_id") is not None:
            self.pin_snapshot_id = int(lease["pin_snapshot_id"])

    def _beat(self, retry: Any) -> None:
        self.body = self._client.call("POST", f"/v1/hydrations/{self.id}/heartbeat",
                                      {"token": self.token}, retry=retry)
