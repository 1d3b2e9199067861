"""A Glue-protocol test double in front of moto's server.

moto runs Glue's job API but cannot end a run FAILED, ERROR or TIMEOUT,
cannot stop one (BatchStopJobRun), and runs no job code. This double
forwards every call to moto unchanged, except what a test scripts through
its control API:

    POST /_double/script  {"outcomes": {"JOB": ["FAILED", "SUCCEEDED", ...]},
                           "drop_start_answers": {"JOB": N},
                           "concurrent_exceeded": {"JOB": N},
                           "commands": {"JOB": ["python", "script.py", ...]},
                           "before_update": {"TABLE": ["python", "writer.py", ...]}}
    GET  /_double/calls   -> {"ACTION": count, "StartJobRun:JOB": count, ...}
    POST /_double/finish  {"job": "JOB"} -> {"finished": N, "at": EPOCH_SECONDS}
                          (every RUNNING-scripted run of JOB now SUCCEEDED)

- outcomes: each StartJobRun of JOB takes the next outcome; GetJobRun(s)
  then report it: FAILED/ERROR/TIMEOUT (with an ErrorMessage), SUCCEEDED,
  or RUNNING (until stopped). Without one, moto's own state shows.
- drop_start_answers: the next N StartJobRun calls of JOB are forwarded
  (moto starts the run) and the connection is then closed without an
  answer: a lost response.
- concurrent_exceeded: the next N StartJobRun calls of JOB are answered
  ConcurrentRunsExceededException without reaching moto.
- commands: a started run of JOB runs this command with the run's
  arguments appended (`--key value`, as Glue passes them to a script);
  the run is RUNNING while it lives, then SUCCEEDED (exit 0) or FAILED.
- BatchStopJobRun is answered here: the run becomes STOPPED (its command
  is killed).
- UpdateTable with a VersionId is refused ConcurrentModificationException
  when the table is at another version, as Glue refuses it (moto ignores
  VersionId, so two writers racing would overwrite each other's commit);
  each refusal counts as `UpdateTable:conflict`.
- before_update: the next versioned UpdateTable of TABLE first runs this
  command to its end (a writer committing to moto directly), so that the
  update meets a table that moved after its caller read it: a race, made
  to happen.

    glue_double.py LISTEN_PORT MOTO_URL
"""

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SCRIPT = {"outcomes": {}, "drop_start_answers": {}, "concurrent_exceeded": {}, "commands": {},
          "before_update": {}}
CALLS = {}
# run id -> {"outcome": str|None, "process": Popen|None, "stopped": bool}
RUNS = {}
MOTO = ""
# Held from a versioned UpdateTable's check until moto applied it.
TABLES = threading.Lock()


def count(key):
    CALLS[key] = CALLS.get(key, 0) + 1


def take(kind, job):
    """Take one scripted item of `kind` for `job` (a list or a count)."""
    table = SCRIPT[kind]
    value = table.get(job)
    if isinstance(value, list):
        return value.pop(0) if value else None
    if isinstance(value, int) and value > 0:
        table[job] = value - 1
        return True
    return None


def now():
    return datetime.now(timezone.utc).timestamp()


def override(run):
    """A run as moto describes it, with what the script says instead."""
    state = RUNS.get(run.get("Id"))
    if state is None:
        return run
    if state["stopped"]:
        run["JobRunState"] = "STOPPED"
        return run
    process = state["process"]
    if process is not None:
        code = process.poll()
        if code is None:
            run["JobRunState"] = "RUNNING"
            run.pop("CompletedOn", None)
        elif code == 0:
            run["JobRunState"] = "SUCCEEDED"
        else:
            run["JobRunState"] = "FAILED"
            run["ErrorMessage"] = (state.get("stderr") or f"exit code {code}")[-500:]
        return run
    outcome = state["outcome"]
    if outcome is None:
        return run
    run["JobRunState"] = outcome
    if outcome in ("FAILED", "ERROR", "TIMEOUT"):
        run["ErrorMessage"] = f"scripted {outcome.lower()}"
    if outcome == "RUNNING":
        run.pop("CompletedOn", None)
    return run


def launch(job, run_id, arguments):
    command = SCRIPT["commands"].get(job)
    process = None
    if command:
        argv = list(command)
        for key, value in sorted((arguments or {}).items()):
            argv += [key, value]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        state = {"outcome": None, "process": process, "stopped": False, "stderr": ""}

        def drain():
            state["stderr"] = process.stderr.read()

        threading.Thread(target=drain, daemon=True).start()
    else:
        state = {"outcome": take("outcomes", job), "process": None, "stopped": False}
    state["job"] = job
    RUNS[run_id] = state


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/x-amz-json-1.1"):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self, body):
        request = urllib.request.Request(MOTO + self.path, data=body, method=self.command)
        for key, value in self.headers.items():
            if key.lower() not in ("host", "content-length", "connection"):
                request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read(), answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("Content-Type", "")

    def glue(self, action, request):
        """A Glue call of the double's own to moto, signed as the caller's."""
        call = urllib.request.Request(MOTO + "/", data=json.dumps(request).encode(), method="POST")
        call.add_header("Content-Type", "application/x-amz-json-1.1")
        call.add_header("X-Amz-Target", f"AWSGlue.{action}")
        if self.headers.get("Authorization"):
            call.add_header("Authorization", self.headers["Authorization"])
        with urllib.request.urlopen(call, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")

    def versioned_update(self, request, body):
        with LOCK:
            writer = SCRIPT["before_update"].pop(request["TableInput"]["Name"], None)
        if writer:
            subprocess.run(writer, check=True, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with TABLES:
            current = self.glue("GetTable", {"DatabaseName": request["DatabaseName"],
                                             "Name": request["TableInput"]["Name"]})
            if current.get("Table", {}).get("VersionId") != request["VersionId"]:
                with LOCK:
                    count("UpdateTable:conflict")
                return self.reply(400, {"__type": "ConcurrentModificationException",
                                        "message": "the table changed since version "
                                                   f"{request['VersionId']}"})
            status, data, kind = self.forward(body)
            return self.reply(status, data, kind)

    def do_GET(self):
        if self.path == "/_double/calls":
            with LOCK:
                return self.reply(200, dict(CALLS), "application/json")
        status, data, kind = self.forward(None)
        self.reply(status, data, kind)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_double/finish":
            job = json.loads(body or b"{}")["job"]
            with LOCK:
                done = 0
                for state in RUNS.values():
                    if state.get("job") == job and state["outcome"] == "RUNNING":
                        state["outcome"] = "SUCCEEDED"
                        done += 1
                return self.reply(200, {"finished": done, "at": now()}, "application/json")
        if self.path == "/_double/script":
            with LOCK:
                for kind, value in json.loads(body or b"{}").items():
                    SCRIPT[kind].update(value)
            return self.reply(200, {}, "application/json")
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith("AWSGlue."):
            status, data, kind = self.forward(body)
            return self.reply(status, data, kind)
        action = target.split(".", 1)[1]
        request = json.loads(body or b"{}")
        job = request.get("JobName", "")
        with LOCK:
            count(action)
        if action == "UpdateTable" and "VersionId" in request:
            return self.versioned_update(request, body)
        with LOCK:
            if action == "StartJobRun":
                count(f"StartJobRun:{job}")
                if take("concurrent_exceeded", job):
                    return self.reply(
                        400,
                        {"__type": "ConcurrentRunsExceededException", "message": f"{job}: concurrent runs exceeded"},
                    )
            if action == "BatchStopJobRun":
                done = []
                for run_id in request.get("JobRunIds", []):
                    state = RUNS.setdefault(run_id, {"outcome": None, "process": None, "stopped": False})
                    state["stopped"] = True
                    if state["process"] is not None and state["process"].poll() is None:
                        state["process"].kill()
                    done.append({"JobName": job, "JobRunId": run_id})
                return self.reply(200, {"SuccessfulSubmissions": done, "Errors": []})
        status, data, kind = self.forward(body)
        if status != 200:
            return self.reply(status, data, kind)
        answer = json.loads(data or b"{}")
        with LOCK:
            if action == "StartJobRun":
                launch(job, answer.get("JobRunId"), request.get("Arguments"))
                if take("drop_start_answers", job):
                    # moto started the run; the caller never hears of it.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
            elif action == "GetJobRun" and "JobRun" in answer:
                answer["JobRun"] = override(answer["JobRun"])
            elif action == "GetJobRuns":
                answer["JobRuns"] = [override(r) for r in answer.get("JobRuns", [])]
        self.reply(200, answer)


def main(argv):
    global MOTO
    port, MOTO = int(argv[1]), argv[2].rstrip("/")
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
