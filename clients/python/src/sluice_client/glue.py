"""What a Glue job learns from the arguments sluice started it with.

sluice stamps every run it starts with `--sluice-run-id RUN/ATTEMPT` and,
when it runs with `--advertise-url`, `--sluice-url`; a compaction run also
gets the write lease it runs under: `--sluice-lease-id`, `--sluice-token`
(the fencing token), `--sluice-table`, `--sluice-base-snapshot-id` and
`--sluice-expire-older-than`. sluice heartbeats and releases that lease
itself; the job only carries the token into its Iceberg commit."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from .aws import AwsLogin
from .client import Client
from .errors import SluiceError
from .hydration import Hydration
from .transport import Retry

# The snapshot summary property sluice checks a compaction's commit by.
TOKEN_PROPERTY = "sluice.lease-token"
LEASE_PROPERTY = "sluice.lease-id"


@dataclass(frozen=True)
class GlueArgs:
    url: Optional[str]
    run_id: Optional[str]
    attempt: Optional[int]
    lease_id: Optional[str]
    token: Optional[int]
    table: Optional[str]
    base_snapshot_id: Optional[int]
    expire_older_than: Optional[str]
    # Every `--key value` pair of the command line, keys without `--`.
    arguments: Dict[str, str] = field(default_factory=dict)

    def client(self, token: Optional[str] = None, *, timeout: float = 30.0,
               retry: Retry = Retry()) -> Client:
        """A client for sluice at `--sluice-url` (else `$SLUICE_URL`), with
        the bearer `token`, else `$SLUICE_TOKEN`, else the job argument
        `--SLUICE_TOKEN` (set on the Glue job itself: sluice passes no
        `--sluice*` argument but its own); with none of them and `--sluice-aws-server-id`
        (sluice passes it when IAM authentication is on), the job logs in
        with its own role (`aws.AwsLogin`, region from `AWS_REGION`)."""
        bearer = token or os.environ.get("SLUICE_TOKEN") or self.arguments.get("SLUICE_TOKEN")
        server_id = self.arguments.get("sluice-aws-server-id")
        if bearer is None and server_id:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            login = AwsLogin(server_id, region,
                             sts_endpoint=self.arguments.get("sluice-aws-sts-endpoint"))
            return Client(self.url, timeout=timeout, retry=retry, aws=login)
        return Client(self.url, bearer, timeout=timeout, retry=retry)

    def hydration(self, client: Client, table: str, container: str, target: str,
                  **options: Any) -> Hydration:
        """The copy of `table` in `container`.`target` with this run attached
        (`client.hydration`): its run id is sluice's run, so a retried
        attempt of the run gets the same session back."""
        if self.run_id is None:
            raise SluiceError("this run was not started by sluice (no --sluice-run-id)")
        return client.hydration(table, container, target, run_id=self.run_id, **options)

    def snapshot_properties(self) -> Dict[str, str]:
        """What the job's Iceberg commit must carry in its snapshot summary
        for sluice to accept it as the one made under this lease."""
        if self.token is None or self.lease_id is None:
            raise SluiceError("this run was not started under a lease (no --sluice-token)")
        return {TOKEN_PROPERTY: str(self.token), LEASE_PROPERTY: self.lease_id}


def parse_args(argv: Sequence[str]) -> Dict[str, str]:
    """`--key value` and `--key=value` pairs (Glue passes the first).

    sluice's own `--sluice-*` arguments decide where the job sends its
    identity: one given twice is refused (sluice writes each once, and
    refuses callers' arguments that read as options), never resolved by
    taking one of them."""
    out: Dict[str, str] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key, eq, value = item[2:].partition("=")
            if not eq:
                following = items[i + 1] if i + 1 < len(items) else None
                if following is not None and not following.startswith("--"):
                    value, i = following, i + 1
            if key.lower().startswith("sluice") and key in out:
                raise SluiceError(f"--{key} is given twice in the job arguments: refusing to guess")
            out[key] = value
        i += 1
    return out


def from_glue_args(argv: Optional[Sequence[str]] = None) -> GlueArgs:
    """Read sluice's arguments from `argv` (default `sys.argv`)."""
    args = parse_args(sys.argv[1:] if argv is None else argv[1:] if _has_program(argv) else argv)
    stamp = args.get("sluice-run-id")
    run_id, _, attempt = (stamp or "").partition("/")
    return GlueArgs(
        url=args.get("sluice-url"),
        run_id=run_id or None,
        attempt=int(attempt) if attempt.isdigit() else None,
        lease_id=args.get("sluice-lease-id"),
        token=_int(args.get("sluice-token")),
        table=args.get("sluice-table"),
        base_snapshot_id=_int(args.get("sluice-base-snapshot-id")),
        expire_older_than=args.get("sluice-expire-older-than"),
        arguments=args,
    )


def _has_program(argv: Sequence[str]) -> bool:
    return bool(argv) and not argv[0].startswith("--")


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value else None
    except ValueError:
        raise SluiceError(f"not a number in the job arguments: {value!r}") from None
