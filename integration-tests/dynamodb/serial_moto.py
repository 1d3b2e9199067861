"""moto's server, answering one request at a time.

moto's DynamoDB TransactWriteItems is not isolated between its server's
threads: it checks the conditions and writes the items without a lock, and
a cancelled transaction puts back a copy of the whole table taken when it
began, wiping what other threads wrote meanwhile (an acknowledged commit of
another replica can vanish). DynamoDB itself serializes transactions on
the items they share; serving one request at a time gives moto that
isolation, so the tests and benchmarks of sluice's DynamoDB backend check
sluice, not moto's races. Everything else is moto's own server.

usage: python serial_moto.py HOST PORT
"""

import os
import sys
import threading
from typing import Any, Callable, Iterable

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def serial(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    with one_at_a_time:
        # The whole body inside the lock: moto builds it while iterated.
        return list(app(environ, start_response))


run_simple(host, port, serial, threaded=True, request_handler=MotoRequestHandler)
