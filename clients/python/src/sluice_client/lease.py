"""`with client.read_lease(...) as lease:` and `write_lease`: the block is
entered only once the lease is granted, runs while a background thread
heartbeats it, and the lease is released on the way out, whatever happens
in the block."""

from __future__ import annotations

import threading
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Optional, Type

from .errors import ApiError, Conflict, LeaseLost, LeaseTimeout, NotFound
from .keeper import Keeper
from .transport import Retry

if TYPE_CHECKING:
    from .client import Client

# The longest long-poll of one request; the wait is made of several.
POLL_SECONDS = 50
ENDED = ("released", "expired", "revoked", "cancelled")


class Lease:
    """A read or write lease on a table.

    `token` is the fencing token: pass it on with what the lease protects
    (an Iceberg snapshot summary, a downstream write). `lost` is set the
    moment a heartbeat learns the lease is gone; `check()` raises then.
    Leaving the block with the lease lost raises `LeaseLost`, so a job that
    lost its lease never reports success."""

    def __init__(self, client: "Client", table: str, mode: str, *, ttl: int, wait: float,
                 holder: Optional[str] = None, pin_snapshot_id: Optional[int] = None,
                 purpose: Optional[str] = None, idempotency_key: Optional[str] = None) -> None:
        self._client = client
        self.table = table
        self.mode = mode
        self.ttl = ttl
        self.wait = wait
        self.holder = holder or client.holder
        self.pin_snapshot_id = pin_snapshot_id
        self.purpose = purpose
        # Makes a retried acquire (a lost answer) return the same lease.
        self.idempotency_key = idempotency_key or f"py-{uuid.uuid4()}"
        self.lease_id: str = ""
        self.token: int = 0
        self.body: Dict[str, Any] = {}
        self._keeper = Keeper("lease", float(ttl), self._beat)
        self._released = False

    # --- the block ------------------------------------------------------

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        self.release()
        if error is None and self.lost.is_set():
            self.check()

    @property
    def lost(self) -> threading.Event:
        return self._keeper.lost

    def check(self) -> None:
        """Raise `LeaseLost` if the lease is gone."""
        self._keeper.check(LeaseLost, f"{self.mode} lease {self.lease_id} on {self.table}")

    # --- the steps --------------------------------------------------------

    def acquire(self) -> "Lease":
        """Wait for the grant (up to `wait` seconds) and start heartbeating;
        `LeaseTimeout` if it is not granted in time (nothing is held then)."""
        deadline = time.monotonic() + self.wait
        body: Dict[str, Any] = {"mode": self.mode, "holder": self.holder, "ttl_seconds": self.ttl,
                                "wait_seconds": poll_seconds(deadline), "idempotency_key": self.idempotency_key}
        if self.pin_snapshot_id is not None:
            body["pin_snapshot_id"] = self.pin_snapshot_id
        if self.purpose:
            body["purpose"] = self.purpose
        sent = time.monotonic()
        answer = self._client.call("POST", f"/v1/tables/{self.table}/leases", body,
                                   timeout=poll_seconds(deadline) + 30)
        self.adopt(answer, deadline, sent)
        return self

    def adopt(self, answer: Dict[str, Any], deadline: float, sent: float) -> None:
        """Take over a lease sluice created (acquired, or a hydration's):
        long-poll until granted, then heartbeat it."""
        self._set(answer)
        while answer.get("state") == "waiting":
            if time.monotonic() >= deadline:
                self._give_up()
                raise LeaseTimeout(f"{self.mode} lease on {self.table} not granted within "
                                   f"{self.wait:g} s (position {answer.get('position')})")
            sent = time.monotonic()
            answer = self._client.call("GET", f"/v1/leases/{self.lease_id}",
                                       query={"wait_seconds": poll_seconds(deadline)},
                                       timeout=poll_seconds(deadline) + 30)
            self._set(answer)
        if answer.get("state") != "granted":
            raise LeaseTimeout(f"{self.mode} lease {self.lease_id} on {self.table} ended while "
                               f"waiting: {answer.get('state')} ({answer.get('end_reason')})")
        self.token = int(answer["token"])
        self._keeper.start(sent)

    def heartbeat(self) -> None:
        """One heartbeat now (the background thread does this by itself)."""
        self.check()
        self._keeper.beat_now()

    def mark_lost(self, reason: str, cause: Optional[BaseException] = None) -> None:
        """Something other than a heartbeat learnt the lease is gone."""
        self._keeper.mark_lost(reason, cause)

    def abandon(self) -> None:
        """Stop heartbeating without releasing: the lease ends with what
        owns it (a hydration's ends when the hydration does)."""
        self._keeper.stop()
        self._released = True

    def release(self) -> None:
        """Stop heartbeating and release (safe to repeat)."""
        self._keeper.stop()
        if self._released or not self.lease_id:
            return
        self._released = True
        try:
            self._client.call("DELETE", f"/v1/leases/{self.lease_id}", query={"token": self.token})
        except (Conflict, NotFound):
            pass  # already ended (expired, revoked): nothing is held either way

    # --- inside -----------------------------------------------------------

    def _set(self, answer: Dict[str, Any]) -> None:
        self.body = answer
        self.lease_id = str(answer["lease_id"])
        if answer.get("pin_snapshot_id") is not None:
            self.pin_snapshot_id = int(answer["pin_snapshot_id"])

    def _beat(self, retry: Retry) -> None:
        answer = self._client.call("POST", f"/v1/leases/{self.lease_id}/heartbeat",
                                   {"token": self.token, "ttl_seconds": self.ttl}, retry=retry)
        self.body = answer

    def _give_up(self) -> None:
        """Leave the queue; if the grant raced the timeout, release it."""
        self._released = True
        try:
            self._client.call("DELETE", f"/v1/leases/{self.lease_id}")
        except ApiError:
            current = self._client.call("GET", f"/v1/leases/{self.lease_id}")
            if current.get("state") == "granted":
                self._client.call("DELETE", f"/v1/leases/{self.lease_id}",
                                  query={"token": current["token"]})


def poll_seconds(deadline: float) -> int:
    """One long-poll's wait: what is left until `deadline`, at most POLL_SECONDS."""
    return int(max(0, min(POLL_SECONDS, deadline - time.monotonic())))
