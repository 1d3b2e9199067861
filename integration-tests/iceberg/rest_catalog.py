"""An Iceberg REST catalog for sluice's tests, in front of pyiceberg's SqlCatalog.

sluice commits snapshot refs (its pin tags) through an Iceberg REST catalog,
and no REST catalog server is installable from the registries this project
uses. This server speaks the REST protocol (the Iceberg REST Catalog OpenAPI
spec, without a prefix) and hands every call to a real catalog: pyiceberg's
SqlCatalog, on the same SQLite file that the tests' lake.py writes to. All
catalog semantics are pyiceberg's: request bodies are parsed with its own
models, commit requirements are validated and updates applied by
`SqlCatalog.commit_table`, whose optimistic check (the row still holds the
metadata location it read) decides a race, and answers are its models'
JSON. Tables are loaded afresh on every call, as lake.py moves them behind
the server's back.

    GET  /v1/config                                  -> {"defaults": {}, "overrides": {}}
    GET  /v1/namespaces                              -> {"namespaces": [[...], ...]}
    GET  /v1/namespaces/{ns}                         -> {"namespace": [...], "properties": {...}}
    HEAD /v1/namespaces/{ns}                         -> 204 or 404
    GET  /v1/namespaces/{ns}/tables                  -> {"identifiers": [...]}
    GET  /v1/namespaces/{ns}/tables/{table}          -> LoadTableResult
    HEAD /v1/namespaces/{ns}/tables/{table}          -> 204 or 404
    POST /v1/namespaces/{ns}/tables/{table}          -> CommitTableResponse (commit)

    POST /_double/script  {"fail_commits": N}
    GET  /_double/calls   -> {"METHOD route": count, "commit:ok": count,
                              "commit:conflict": count, "commit:unavailable": count}

- {ns} is the namespace's levels joined by the unit separator (%1F).
- Errors carry the REST error body {"error": {"message", "type", "code"}}:
  404 NoSuchTableException / NoSuchNamespaceException / NotFoundException,
  400 BadRequestException (a body pyiceberg's models refuse),
  400 ValidationException (an update pyiceberg cannot apply, e.g. a ref to
  an unknown snapshot), 409 CommitFailedException (a requirement failed or
  the commit lost a race), 500 for anything unexpected (logged to stderr).
- fail_commits: the next N commits are answered 503
  ServiceUnavailableException without reaching the catalog.

    rest_catalog.py LISTEN_PORT CATALOG_JSON

CATALOG_JSON is the catalog's properties with a "name", as lake.py takes
them (e.g. {"name": "local", "type": "sql", "uri": "sqlite:///...",
"warehouse": "file:///..."}).
"""

import json
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError
from pyiceberg.catalog import load_catalog
from pyiceberg.catalog.rest import ConfigResponse, ListNamespaceResponse, TableResponse
from pyiceberg.catalog.rest.response import ErrorResponse, ErrorResponseMessage
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import CommitTableRequest

# Guards only the counters and the script: commits are not serialized here,
# so that concurrent ones race in the catalog as they would in a real one.
LOCK = threading.Lock()
CALLS = {}
SCRIPT = {"fail_commits": 0}
CATALOG = None


def count(key):
    with LOCK:
        CALLS[key] = CALLS.get(key, 0) + 1


def error(status, kind, message):
    body = ErrorResponse(error=ErrorResponseMessage(message=message, type=kind, code=status))
    return status, body.model_dump_json()


def route(path):
    """(kind, namespace, table) of a REST path, or None."""
    parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
    if parts[:1] != ["v1"]:
        return None
    rest = parts[1:]
    if rest == ["config"]:
        return "config", None, None
    if rest == ["namespaces"]:
        return "namespaces", None, None
    if len(rest) < 2 or rest[0] != "namespaces" or not rest[1]:
        return None
    namespace = tuple(rest[1].split("\x1f"))
    if len(rest) == 2:
        return "namespace", namespace, None
    if rest[2:] == ["tables"]:
        return "tables", namespace, None
    if len(rest) == 4 and rest[2] == "tables" and rest[3]:
        return "table", namespace, rest[3]
    return None


def get_namespace(namespace):
    try:
        properties = CATALOG.load_namespace_properties(namespace)
    except NoSuchNamespaceError as e:
        return error(404, "NoSuchNamespaceException", str(e))
    return 200, json.dumps({"namespace": list(namespace), "properties": properties})


def load_table(namespace, name):
    try:
        table = CATALOG.load_table((*namespace, name))
    except NoSuchTableError as e:
        return error(404, "NoSuchTableException", str(e))
    answer = TableResponse(metadata_location=table.metadata_location, metadata=table.metadata, config={})
    return 200, answer.model_dump_json()


def commit(namespace, name, body):
    with LOCK:
        unavailable = SCRIPT["fail_commits"] > 0
        if unavailable:
            SCRIPT["fail_commits"] -= 1
    if unavailable:
        count("commit:unavailable")
        return error(503, "ServiceUnavailableException", "scripted: service unavailable")
    try:
        request = json.loads(body or b"{}")
        # The spec makes the identifier optional on this path; pyiceberg's
        # model does not, and the path names the table anyway.
        if isinstance(request, dict) and request.get("identifier") is None:
            request["identifier"] = {"namespace": list(namespace), "name": name}
        request = CommitTableRequest.model_validate(request)
    except (ValueError, ValidationError) as e:
        return error(400, "BadRequestException", f"malformed commit request: {e}")
    try:
        # commit_table reloads the table itself and validates the
        # requirements against that; this load only finds it (or 404s).
        table = CATALOG.load_table((*namespace, name))
    except NoSuchTableError as e:
        return error(404, "NoSuchTableException", str(e))
    try:
        answer = CATALOG.commit_table(table, request.requirements, request.updates)
    except CommitFailedException as e:
        count("commit:conflict")
        return error(409, "CommitFailedException", str(e))
    except NoSuchTableError as e:
        return error(404, "NoSuchTableException", str(e))
    except ValueError as e:
        return error(400, "ValidationException", str(e))
    count("commit:ok")
    return 200, answer.model_dump_json()


def dispatch(method, path, body):
    if path.split("?")[0] == "/_double/calls" and method == "GET":
        with LOCK:
            return 200, json.dumps(CALLS)
    if path.split("?")[0] == "/_double/script" and method == "POST":
        try:
            script = json.loads(body or b"{}")
            fail = int(script.get("fail_commits", 0))
        except (ValueError, TypeError, AttributeError) as e:
            return error(400, "BadRequestException", f"bad script: {e}")
        with LOCK:
            SCRIPT["fail_commits"] = fail
        return 200, "{}"
    found = route(path)
    if found is None:
        return error(404, "NotFoundException", f"no route for {method} {path}")
    kind, namespace, name = found
    count(f"{method} {kind}")
    if (method, kind) == ("GET", "config"):
        return 200, ConfigResponse(defaults={}, overrides={}).model_dump_json()
    if (method, kind) == ("GET", "namespaces"):
        parent = dict(p.split("=", 1) for p in urlsplit(path).query.split("&") if "=" in p).get("parent")
        parent = tuple(unquote(parent).split("\x1f")) if parent else ()
        try:
            namespaces = CATALOG.list_namespaces(parent)
        except NoSuchNamespaceError as e:
            return error(404, "NoSuchNamespaceException", str(e))
        return 200, ListNamespaceResponse(namespaces=namespaces).model_dump_json()
    if kind == "namespace" and method in ("GET", "HEAD"):
        return get_namespace(namespace)
    if (method, kind) == ("GET", "tables"):
        try:
            identifiers = CATALOG.list_tables(namespace)
        except NoSuchNamespaceError as e:
            return error(404, "NoSuchNamespaceException", str(e))
        return 200, json.dumps({"identifiers": [{"namespace": list(i[:-1]), "name": i[-1]} for i in identifiers]})
    if kind == "table" and method in ("GET", "HEAD"):
        return load_table(namespace, name)
    if (method, kind) == ("POST", "table"):
        return commit(namespace, name, body)
    return error(404, "NotFoundException", f"no route for {method} {path}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = None
        try:
            if length is None:
                # The body's end is unknown, so the connection cannot be reused.
                self.close_connection = True
                status, data = error(400, "BadRequestException", "bad Content-Length")
            else:
                status, data = dispatch(self.command, self.path, self.rfile.read(length))
        except Exception as e:  # a bug or a broken catalog: answer, and keep serving
            traceback.print_exc(file=sys.stderr)
            status, data = error(500, type(e).__name__, str(e))
        if self.command == "HEAD" and status == 200:
            status, data = 204, ""
        payload = b"" if self.command == "HEAD" or status == 204 else data.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_any


def main(argv):
    global CATALOG
    port, props = int(argv[1]), dict(json.loads(argv[2]))
    name = props.pop("name")
    CATALOG = load_catalog(name, **props)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
