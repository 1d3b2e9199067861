"""The client: where sluice is, who is calling, and one method per thing a
job or a scheduler asks for."""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from .aws import AwsLogin
from .batch import Batch
from .errors import SluiceError
from .hydration import Hydration
from .lease import Lease
from .transport import Query, Retry, Transport

# A dead letter waits for an operator: for a caller waiting on the run it is the end.
RUN_ENDED = ("succeeded", "failed", "dead_letter", "cancelled")
COMPACTION_ENDED = ("succeeded", "failed", "cancelled")


class Client:
    """sluice at `url` (default `$SLUICE_URL`), with the bearer `token`
    (default `$SLUICE_TOKEN`; none when sluice runs without auth).

    `aws` logs in with the process's AWS identity instead of a token
    (`sluice_client.aws.AwsLogin`, IAM authentication). `retry` says how
    long calls keep trying through connection errors, 503 and 429; `holder`
    names this process in the leases it takes."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *,
                 timeout: float = 30.0, retry: Retry = Retry(),
                 holder: Optional[str] = None, aws: Optional[AwsLogin] = None) -> None:
        url = url or os.environ.get("SLUICE_URL")
        if not url:
            raise SluiceError("no sluice URL: pass url= or set SLUICE_URL")
        self.url = url.rstrip("/")
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        source: Union[str, AwsLogin, None] = token
        if source is None and aws is not None:
            source = aws.bind(self.url, timeout, retry)
        self._transport = Transport(self.url, source or os.environ.get("SLUICE_TOKEN"),
                                    timeout, retry)

    def call(self, method: str, path: str, body: Any = None, query: Optional[Query] = None,
             **options: Any) -> Any:
        """Any API call: the JSON answer, or a typed `ApiError`."""
        return self._transport.call(method, path, body, query, **options)

    # --- leases -------------------------------------------------------------

    def read_lease(self, table: str, *, ttl: int = 600, wait: float = 300,
                   pin_snapshot_id: Optional[int] = None, holder: Optional[str] = None,
                   purpose: Optional[str] = None, idempotency_key: Optional[str] = None) -> Lease:
        """A shared lease, for `with`: many readers hold a table at once."""
        return Lease(self, table, "read", ttl=ttl, wait=wait, holder=holder,
                     pin_snapshot_id=pin_snapshot_id, purpose=purpose,
                     idempotency_key=idempotency_key)

    def write_lease(self, table: str, *, ttl: int = 600, wait: float = 300,
                    holder: Optional[str] = None, purpose: Optional[str] = None,
                    idempotency_key: Optional[str] = None) -> Lease:
        """The exclusive lease, for `with`: no reader or other writer meanwhile."""
        return Lease(self, table, "write", ttl=ttl, wait=wait, holder=holder, purpose=purpose,
                     idempotency_key=idempotency_key)

    def lease(self, lease_id: str) -> Dict[str, Any]:
        return dict(self.call("GET", f"/v1/leases/{lease_id}"))

    def table_leases(self, table: str) -> Dict[str, Any]:
        """Holders and waiters, in queue order."""
        return dict(self.call("GET", f"/v1/tables/{table}/leases"))

    def revoke_lease(self, lease_id: str, reason: str) -> Dict[str, Any]:
        """End someone's lease (operators)."""
        return dict(self.call("POST", f"/v1/leases/{lease_id}/revoke", {"reason": reason}))

    # --- tables and streams ---------------------------------------------------

    def put_table(self, table: str, **settings: Any) -> Dict[str, Any]:
        """Register a table or change its settings (`catalog`,
        `compaction_job`, `max_compaction_deferral_seconds`, `pin_tags`)."""
        return dict(self.call("PUT", f"/v1/tables/{table}", settings))

    def table(self, table: str) -> Dict[str, Any]:
        return dict(self.call("GET", f"/v1/tables/{table}"))

    def refresh_table(self, table: str) -> Dict[str, Any]:
        """Have sluice read the table's Iceberg metadata now."""
        return dict(self.call("POST", f"/v1/tables/{table}/refresh"))

    def retention(self, table: str) -> Dict[str, Any]:
        """What snapshot expiry may remove now (`safe_older_than`)."""
        return dict(self.call("GET", f"/v1/tables/{table}/retention"))

    def put_stream(self, stream: str, *, table: str, source: Optional[Mapping[str, Any]] = None,
                   expected_schema_hash: Optional[str] = None) -> Dict[str, Any]:
        body: Dict[str, Any] = {"table": table}
        if source is not None:
            body["source"] = dict(source)
        if expected_schema_hash is not None:
            body["expected_schema_hash"] = expected_schema_hash
        return dict(self.call("PUT", f"/v1/streams/{stream}", body))

    def batch(self, stream: str, *, run_id: str, ttl: int = 300, wait: float = 60) -> Batch:
        """The stream's next batch, for `with`: `batch.bookmark` says where
        to resume; `batch.commit(...)` records the work; an exception (or
        no commit) fails the batch."""
        return Batch(self, stream, run_id=run_id, ttl=ttl, wait=wait)

    def bookmark(self, stream: str) -> Dict[str, Any]:
        return dict(self.call("GET", f"/v1/streams/{stream}/bookmark"))

    # --- hydrations and views --------------------------------------------------

    def put_container(self, name: str, **body: Any) -> Dict[str, Any]:
        """Register a consumer container (`kind="postgres", url=...`)."""
        return dict(self.call("PUT", f"/v1/containers/{name}", body))

    def hydration(self, table: str, container: str, target: str, *,
                  views: Sequence[str] = (), columns: Optional[Sequence[str]] = None,
                  lag_threshold_snapshots: Optional[int] = None,
                  pin_snapshot_id: Optional[int] = None, lease_ttl: int = 600,
                  session_ttl: int = 600, wait: float = 300,
                  run_id: Optional[str] = None) -> Hydration:
        """The copy of `table` in `container`.`target`, for `with`: resumed
        if it exists, else created; the block is one session of `run_id`."""
        return Hydration(self, table=table, container=container, target=target, views=views,
                         columns=columns, lag_threshold_snapshots=lag_threshold_snapshots,
                         pin_snapshot_id=pin_snapshot_id, lease_ttl=lease_ttl,
                         session_ttl=session_ttl, wait=wait, holder=self.holder, run_id=run_id)

    def get_hydration(self, hydration_id: str) -> Dict[str, Any]:
        return dict(self.call("GET", f"/v1/hydrations/{hydration_id}"))

    def hydrations(self, *, state: Optional[str] = None, table: Optional[str] = None,
                   container: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """Every hydration matching the filters, page after page."""
        return self._pages("/v1/hydrations", "hydrations",
                           {"state": state, "table": table, "container": container})

    def view(self, container: str, view: str) -> Dict[str, Any]:
        """A consumer view with its target and remap history."""
        return dict(self.call("GET", f"/v1/views/{container}/{view}"))

    # --- compactions and runs --------------------------------------------------

    def request_compaction(self, table: str, *, requested_by: str, reason: Optional[str] = None,
                           not_before: Optional[str] = None) -> Dict[str, Any]:
        """Queue a compaction (or get the one already pending): it waits for
        the table's write lease, then sluice starts the compaction job."""
        body: Dict[str, Any] = {"requested_by": requested_by}
        if reason:
            body["reason"] = reason
        if not_before:
            body["not_before"] = not_before
        return dict(self.call("POST", f"/v1/tables/{table}/compactions", body))

    def compaction(self, table: str, compaction_id: str) -> Dict[str, Any]:
        return dict(self.call("GET", f"/v1/tables/{table}/compactions/{compaction_id}"))

    def wait_compaction(self, table: str, compaction_id: str, *, timeout: float = 3600,
                        every: float = 1.0) -> Dict[str, Any]:
        """Poll until the compaction ends; its last state (SluiceError on timeout)."""
        return self._until(lambda: self.compaction(table, compaction_id), COMPACTION_ENDED,
                           timeout, every, f"compaction {compaction_id}")

    def start_run(self, job: str, arguments: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """Queue a run of a job now. Not retried once sent: a second call
        would queue a second run."""
        return dict(self.call("POST", f"/v1/jobs/{job}/runs",
                              {"arguments": dict(arguments or {})}, idempotent=False))

    def run(self, run_id: str) -> Dict[str, Any]:
        return dict(self.call("GET", f"/v1/runs/{run_id}"))

    def runs(self, *, job: Optional[str] = None, state: Optional[str] = None,
             since: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        return self._pages("/v1/runs", "runs", {"job": job, "state": state, "since": since})

    def wait_run(self, run_id: str, *, timeout: float = 3600, every: float = 1.0) -> Dict[str, Any]:
        """Poll until the run ends (succeeded, dead letter, ...)."""
        return self._until(lambda: self.run(run_id), RUN_ENDED, timeout, every, f"run {run_id}")

    # --- the event log -----------------------------------------------------------

    def events(self, *, after: int = 0, table: Optional[str] = None,
               stream: Optional[str] = None, kind: Optional[str] = None,
               limit: int = 500) -> List[Dict[str, Any]]:
        """Every event after `after`, in commit order (all pages)."""
        out: List[Dict[str, Any]] = []
        while True:
            page = self.call("GET", "/v1/events", query={
                "after": after, "table": table, "stream": stream, "kind": kind, "limit": limit})
            out.extend(page["events"])
            if not page["events"]:
                return out
            after = int(page["next_after"])

    # --- inside ---------------------------------------------------------------------

    def _pages(self, path: str, key: str, query: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        after: Optional[str] = None
        while True:
            page = self.call("GET", path, query=dict(query, after=after))
            yield from page[key]
            after = page.get("next_after")
            if not after:
                return

    def _until(self, read: Any, ended: Sequence[str], timeout: float, every: float,
               what: str) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            current: Dict[str, Any] = read()
            if current.get("state") in ended:
                return current
            if time.monotonic() >= deadline:
                raise SluiceError(f"{what} still {current.get('state')} after {timeout:g} s")
            time.sleep(every)
