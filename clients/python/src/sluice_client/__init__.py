"""sluice's client for Glue jobs (standard library only).

    from sluice_client import Client
    client = Client()                      # $SLUICE_URL, $SLUICE_TOKEN
    with client.read_lease("sales.orders", ttl=600, wait=300) as lease:
        ...                                # lease.token, lease.lost, lease.check()
    with client.hydration("sales.orders", "analytics", "orders_v1", run_id=run_id) as h:
        ...                                # h.progress(phase=..., snapshot_id=...)
    with client.batch("sales.orders_cdc", run_id=run_id) as batch:
        ...                                # batch.bookmark
        batch.commit(bookmark={"delta": {...}}, counts={...})

Every call retries connection errors, 503 and 429 with back-off and
jitter, never another 4xx; every error is a `SluiceError`, and a refused
call an `ApiError` carrying the server's error `type`.
"""

from .batch import Batch
from .client import Client
from .errors import (ApiError, BadRequest, BatchLost, Conflict, ConnectionFailed, Forbidden,
                     LeaseLost, LeaseTimeout, Lost, NotFound, SessionLost, SluiceError,
                     Unauthorized, Unavailable)
from .glue import LEASE_PROPERTY, TOKEN_PROPERTY, GlueArgs, from_glue_args, parse_args
from .hydration import Hydration
from .lease import Lease
from .transport import Retry

__version__ = "1.0.0"
# The API version the client speaks.
API_VERSION = "v1"

__all__ = [
    "API_VERSION", "ApiError", "BadRequest", "Batch", "BatchLost", "Client", "Conflict",
    "ConnectionFailed", "Forbidden", "GlueArgs", "Hydration", "LEASE_PROPERTY", "Lease",
    "LeaseLost", "LeaseTimeout", "Lost", "NotFound", "Retry", "SessionLost", "SluiceError",
    "TOKEN_PROPERTY",
    "Unauthorized", "Unavailable", "from_glue_args", "parse_args",
]
