"""`with client.batch("stream", run_id=...) as batch:` opens the stream's
batch (waiting while another run's is open), hands the bookmark to resume
from, heartbeats it, and fails it when the block raises or ends without
`batch.commit(...)`."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Type

from .errors import ApiError, BatchLost, Conflict, LeaseTimeout
from .keeper import Keeper
from .transport import Retry

if TYPE_CHECKING:
    from .client import Client

# What a refusal of our batch means: another run may own the stream now.
LOST = ("batch_expired", "batch_finished", "stale_token", "batch_not_found")


class Batch:
    def __init__(self, client: "Client", stream: str, *, run_id: str, ttl: int = 300,
                 wait: float = 60) -> None:
        self._client = client
        self.stream = stream
        self.run_id = run_id
        self.ttl = ttl
        self.wait = wait
        self.batch_id: str = ""
        self.token: int = 0
        self.bookmark: Dict[str, Any] = {}
        self.result: Optional[Dict[str, Any]] = None
        self._finished = False
        self._keeper = Keeper("batch", float(ttl), self._beat)

    @property
    def path(self) -> str:
        return f"/v1/streams/{self.stream}/batches/{self.batch_id}"

    @property
    def lost(self) -> threading.Event:
        return self._keeper.lost

    def check(self) -> None:
        """Raise `BatchLost` if the batch is no longer this run's."""
        self._keeper.check(BatchLost, f"batch {self.batch_id} of {self.stream}")

    def __enter__(self) -> "Batch":
        self.open()
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        self._keeper.stop()
        if not self._finished:
            self.fail(f"the job failed: {error!r}" if error is not None
                      else "the job ended the batch without a commit")

    def open(self) -> "Batch":
        """Open the batch; while another run's is open, retry until `wait`
        runs out (`LeaseTimeout` then)."""
        deadline = time.monotonic() + self.wait
        pause = 0.25
        while True:
            sent = time.monotonic()
            try:
                answer = self._client.call("POST", f"/v1/streams/{self.stream}/batches",
                                           {"run_id": self.run_id, "ttl_seconds": self.ttl})
                break
            except Conflict as e:
                if e.type != "batch_open":
                    raise
                if time.monotonic() >= deadline:
                    raise LeaseTimeout(f"stream {self.stream}: another run's batch is still open "
                                       f"after {self.wait:g} s ({e.details})") from e
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 2.0)
        self.batch_id = str(answer["batch_id"])
        self.token = int(answer["token"])
        self.bookmark = answer["bookmark"]
        self._keeper.start(sent)
        return self

    def heartbeat(self) -> None:
        """A heartbeat now: the last check before making work visible."""
        self.check()
        try:
            self._keeper.beat_now()
        except ApiError as e:
            self._lost_on(e)
            raise

    def commit(self, *, bookmark: Mapping[str, Any], counts: Optional[Mapping[str, int]] = None,
               load_complete: bool = False, snapshot_id: Optional[int] = None,
               schema_hash: Optional[str] = None) -> Dict[str, Any]:
        """Commit the batch with the new bookmark section (`{"load": ...}` or
        `{"delta": ...}`); the answer holds the new bookmark version.
        Retried safely: the same commit answers the same result."""
        self.check()
        body: Dict[str, Any] = {"token": self.token, "bookmark": dict(bookmark),
                                "counts": dict(counts or {})}
        if load_complete:
            body["load_complete"] = True
        if snapshot_id is not None:
            body["snapshot_id"] = snapshot_id
        if schema_hash is not None:
            body["schema_hash"] = schema_hash
        try:
            result: Dict[str, Any] = self._client.call("POST", self.path + "/commit", body)
        except ApiError as e:
            self._lost_on(e)
            raise
        self.result = result
        self._finished = True
        self._keeper.stop()
        return result

    def fail(self, reason: str) -> None:
        """Give the batch up, so the next run need not wait for its TTL."""
        self._finished = True
        self._keeper.stop()
        try:
            self._client.call("POST", self.path + "/fail", {"token": self.token, "reason": reason})
        except ApiError as e:
            if e.type not in LOST:
                raise

    def _lost_on(self, error: ApiError) -> None:
        if error.type in LOST:
            self._keeper.mark_lost(error.type, error)
            self._finished = True
            self._keeper.stop()
            raise BatchLost(f"batch {self.batch_id} of {self.stream}", error.type, error) from error

    def _beat(self, retry: Retry) -> None:
        self._client.call("POST", self.path + "/heartbeat",
                          {"token": self.token, "ttl_seconds": self.ttl}, retry=retry)
