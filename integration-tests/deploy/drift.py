#!/usr/bin/env python3
"""The deploy files cannot drift from the binary.

Every way deploy/ runs sluice -- the compose services, the rendered
Kubernetes containers, the image's ENTRYPOINT/CMD/HEALTHCHECK and the ECS
containers of the Terraform module -- is checked against what the built
`sluice` accepts:

  * the subcommand exists (`sluice SUB --help` succeeds);
  * every flag is one that subcommand takes;
  * every environment variable is one it reads (its `[env: ...]` in the
    help), or one its libraries read (AWS_*, RUST_LOG, PG*), or the one a
    `--from-env` names;
  * every configuration file they mount passes `sluice check-config`.

Then the compose stack's own sequence runs for real, with its commands and
environment: `migrate`, `token import`, two `serve` replicas on a fresh
PostgreSQL database, each checked the way the image's HEALTHCHECK checks it
and called with the stack's token; the Kubernetes Job and Deployment run
the same way with their ConfigMap and (test) Secret values.

Usage: drift.py SLUICE_BINARY RENDERED_MANIFESTS.yaml
Environment: DATABASE_URL (a PostgreSQL server this may create databases on).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SLUICE = ""
RENDERED = ""

# Read by sluice's libraries, not by its flags: the AWS SDK's credential and
# region chain, tracing's filter, and PostgreSQL's own variables (sqlx fills
# what the URL leaves out from them).
LIBRARY_ENV = re.compile(r"^(AWS_[A-Z_]+|RUST_LOG|PG(PASSWORD|SSLMODE|SSLROOTCERT|HOST|PORT|USER|DATABASE|APPNAME))$")
IMAGE_BINARY = "/usr/local/bin/sluice"


@dataclass
class Invocation:
    """One way a deploy file runs the binary."""

    where: str
    args: List[str]
    env: Dict[str, Optional[str]] = field(default_factory=dict)
    # Configuration files it mounts: path inside the container -> text.
    files: Dict[str, str] = field(default_factory=dict)

    def subcommand(self) -> List[str]:
        words = []
        for a in self.args:
            if a.startswith("-"):
                break
            words.append(a)
        return words

    def flags(self) -> List[str]:
        return [a.split("=", 1)[0] for a in self.args if a.startswith("--")]


_help_cache: Dict[str, str] = {}


def help_text(sub: List[str]) -> Optional[str]:
    key = " ".join(sub)
    if key not in _help_cache:
        # A clean environment: help would otherwise print the values set here.
        out = subprocess.run([SLUICE, *sub, "--help"], capture_output=True, text=True,
                             env={"PATH": os.environ.get("PATH", "")})
        _help_cache[key] = out.stdout if out.returncode == 0 else ""
    return _help_cache[key] or None


def accepted_flags(sub: List[str]) -> set:
    return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", help_text(sub) or ""))


def accepted_env(sub: List[str]) -> set:
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text(sub) or ""))


def subcommands(sub: List[str]) -> List[str]:
    text = help_text(sub) or ""
    if "Commands:" not in text:
        return []
    block = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return [w for w in re.findall(r"(?m)^  ([a-z][a-z-]*)", block) if w != "help"]


def binary_env(sub: Optional[List[str]] = None) -> set:
    """Every variable any subcommand reads."""
    sub = sub or []
    names = accepted_env(sub) if sub else set()
    for child in subcommands(sub):
        names |= binary_env(sub + [child])
    return names


def problems(inv: Invocation) -> List[str]:
    sub = inv.subcommand()
    if not sub or help_text(sub) is None:
        return [f"{inv.where}: `sluice {' '.join(inv.args)}`: no such command"]
    found = []
    flags = accepted_flags(sub)
    for flag in inv.flags():
        if flag not in flags:
            found.append(f"{inv.where}: `sluice {' '.join(sub)}` takes no {flag}")
    named = {inv.args[i + 1] for i, a in enumerate(inv.args[:-1]) if a == "--from-env"}
    # One environment is often shared by a deployment's commands: a
    # variable only one of them reads is fine, one none reads is drift.
    env_ok = binary_env() | named
    for name in inv.env:
        if name not in env_ok and not LIBRARY_ENV.match(name):
            found.append(f"{inv.where}: sluice reads no {name}")
    return found


def check_config(where: str, text: str) -> List[str]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sluice.toml"
        path.write_text(text)
        # The file alone (no database): check-config only reads it.
        out = subprocess.run([SLUICE, "check-config", "--config", str(path), "--data-dir", d],
                             capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    return [] if out.returncode == 0 else [f"{where}: {out.stderr.strip()}"]


# --- reading the deploy files ---------------------------------------------

def compose_interpolate(value: str) -> str:
    """compose's ${NAME:-default} and ${NAME}, as compose reads them where
    NAME is not set (this test sets none)."""
    return re.sub(r"\$\{([A-Z0-9_]+)(:-([^}]*))?\}", lambda m: m.group(3) or "", value)


def compose() -> Dict[str, dict]:
    """The compose services that run the sluice image, in start order."""
    path = DEPLOY / "compose" / "compose.yaml"
    doc = yaml.safe_load(path.read_text())
    services = {n: s for n, s in doc["services"].items()
                if str(s.get("image", "")).startswith("sluice")}
    order: List[str] = []

    def visit(name: str) -> None:
        if name in order or name not in services:
            return
        for dep in (services[name].get("depends_on") or {}):
            visit(dep)
        order.append(name)
    for name in services:
        visit(name)
    return {n: services[n] for n in order}


def compose_invocations() -> List[Invocation]:
    out = []
    for name, svc in compose().items():
        env = {k: compose_interpolate(str(v)) for k, v in (svc.get("environment") or {}).items()}
        files = {}
        for volume in svc.get("volumes") or []:
            source, target = volume.split(":")[:2]
            files[target] = (DEPLOY / "compose" / source).read_text()
        out.append(Invocation(f"compose service {name}", list(svc["command"]), env, files))
    return out


def manifests() -> List[dict]:
    return [d for d in yaml.safe_load_all(Path(RENDERED).read_text()) if d]


def kubernetes_invocations(secret: Dict[str, str]) -> List[Invocation]:
    docs = manifests()
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    out = []
    for d in docs:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + pod["containers"]:
            env: Dict[str, Optional[str]] = {}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                else:
                    env[e["name"]] = secret.get(e["valueFrom"]["secretKeyRef"]["key"])
            files = {}
            for m in c.get("volumeMounts", []):
                cm = volumes[m["name"]].get("configMap")
                if cm:
                    for key, text in configmaps[cm["name"]].items():
                        files[f"{m['mountPath']}/{key}"] = text
            args = list(c.get("command", [])) + list(c.get("args", []))
            out.append(Invocation(f"{d['kind']} {d['metadata']['name']} container {c['name']}", args, env, files))
    return out


def dockerfile_invocations() -> List[Invocation]:
    text = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM "):]
    entry = json.loads(re.search(r"(?m)^ENTRYPOINT (\[.*\])$", final).group(1))
    cmd = json.loads(re.search(r"(?m)^CMD (\[.*\])$", final).group(1))
    check = json.loads(re.search(r"(?m)^HEALTHCHECK .*?CMD (\[.*\])$", final).group(1))
    env = dict(re.findall(r"([A-Z][A-Z0-9_]*)=(\S+)", " ".join(re.findall(r"(?m)^ENV (.*)$", final))))
    assert entry == [IMAGE_BINARY], f"ENTRYPOINT is {entry}"
    assert check[0] == IMAGE_BINARY, f"HEALTHCHECK runs {check[0]}"
    return [Invocation("Dockerfile CMD", cmd, env),
            Invocation("Dockerfile HEALTHCHECK", check[1:], env)]


def terraform_invocations() -> List[Invocation]:
    """The ECS containers: their command lists and environment names, read
    from the module's HCL (the values are Terraform expressions)."""
    text = (DEPLOY / "terraform" / "aws" / "service.tf").read_text()
    out = []
    # Each command list's leading string literals: the subcommand.
    heads = [re.findall(r'"([^"]*)"', re.match(r'(\s*"[^"]*"\s*,?)*', body).group(0))
             for body in re.findall(r'command\s*=\s*(?:concat\(\s*)?\[([^\]]*)\]', text)]
    flags = set(re.findall(r'"(--[a-z][a-z0-9-]*)"', text))
    from_env = re.findall(r'"--from-env",\s*"([A-Z0-9_]+)"', text)
    names = set(re.findall(r'name\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
    for words in heads:
        if words[:2] == ["CMD", IMAGE_BINARY]:
            words = words[2:]
        sub = [w for w in words if not w.startswith("-")][:2]
        env = {n: None for n in names}
        own: List[str] = []
        if len(sub) == 2:
            # `token import`, `principal create`: the flags the file spells
            # that it takes, and the variable a --from-env names.
            own = [f for f in sorted(flags) if f in accepted_flags(sub) and f != "--from-env"]
            if "--from-env" in accepted_flags(sub):
                own += [a for name in from_env for a in ("--from-env", name)]
            else:
                env = {n: None for n in names - set(from_env)}
        else:
            env = {n: None for n in names - set(from_env)}
        out.append(Invocation(f"terraform command {words}", sub + own, env))
    # A flag no subcommand of the file takes: reported against the first.
    unclaimed = flags - set().union(*(set(i.flags()) for i in out))
    for flag in sorted(unclaimed):
        out.append(Invocation(f"terraform flag {flag}", [*out[0].subcommand(), flag]))
    return out


# --- running them ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database() -> str:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"sluice_it_deploy_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {name}"], check=True)
    return base.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = url.rsplit("/", 1)[1]
    subprocess.run(["psql", base, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


def localize(inv: Invocation, tmp: Path, database_url: str, rewrite: Dict[str, str]) -> Dict[str, str]:
    """The invocation's environment on this machine: its mounted files
    written under tmp (hosts rewritten), its database the test's own."""
    env = {"PATH": os.environ.get("PATH", "")}
    for path, text in inv.files.items():
        local = tmp / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        for old, new in rewrite.items():
            text = text.replace(old, new)
        local.write_text(text)
    for name, value in inv.env.items():
        if value is None:
            continue
        if value.startswith("/etc/") and value in inv.files:
            value = str(tmp / value.lstrip("/"))
        env[name] = value
    env["SLUICE__DATABASE__URL"] = database_url
    return env


def call(url: str, token: Optional[str] = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def scheduler_leases(address: str, token: str) -> tuple:
    """Holders and waiters of the scheduler's leader lease, as one replica
    sees them (none before the first replica's scheduler made its table)."""
    request = urllib.request.Request(f"http://{address}/v1/tables/sluice_system.scheduler/leases")
    request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        return [], []
    return [l["holder"] for l in body["holders"]], [l["holder"] for l in body["waiters"]]


class Stack:
    """One-shots run to the end; servers started, checked, stopped."""

    def __init__(self, invocations: List[Invocation], database_url: str, rewrite: Dict[str, str]):
        self.invocations = invocations
        self.database_url = database_url
        self.rewrite = rewrite
        self.tmp = Path(tempfile.mkdtemp(prefix="sluice-deploy-"))
        self.servers: List[subprocess.Popen] = []

    def run(self, test: unittest.TestCase) -> List[str]:
        """Returns the address of each server."""
        addresses = []
        for inv in self.invocations:
            env = localize(inv, self.tmp, self.database_url, self.rewrite)
            if inv.subcommand() == ["serve"]:
                address = f"127.0.0.1:{free_port()}"
                env["SLUICE__SERVER__BIND"] = address
                with open(self.tmp / f"serve-{len(self.servers)}.log", "w") as log:
                    self.servers.append(subprocess.Popen([SLUICE, *inv.args], env=env, stdout=log, stderr=log))
                addresses.append(address)
                self.healthy(test, inv, env)
            else:
                out = subprocess.run([SLUICE, *inv.args], env=env, capture_output=True, text=True, timeout=120)
                test.assertEqual(out.returncode, 0, f"{inv.where}: {shlex.join(inv.args)}: {out.stderr}")
        return addresses

    def healthy(self, test: unittest.TestCase, inv: Invocation, env: Dict[str, str]) -> None:
        # As the image's HEALTHCHECK does: `sluice healthcheck`, no URL, the
        # port from the same environment.
        deadline = time.monotonic() + 60
        while True:
            out = subprocess.run([SLUICE, "healthcheck"], env=env, capture_output=True, text=True)
            if out.returncode == 0:
                return
            test.assertIsNone(self.servers[-1].poll(), f"{inv.where}: serve exited; see {self.tmp}")
            test.assertLess(time.monotonic(), deadline, f"{inv.where}: never healthy: {out.stderr}")
            time.sleep(0.2)

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


class Moto:
    """moto's server (from the ingestion venv), standing in for the stack's AWS."""

    def __init__(self) -> None:
        binary = ROOT / ".venv-ingest" / "bin" / "moto_server"
        self.port = free_port()
        self.process = subprocess.Popen([str(binary), "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def iam_login(moto: "Moto", address: str, server_id: str) -> tuple:
    """Log in through the Python client with a moto role (glue-ingest);
    the role sluice gave, and a table list's status with that token."""
    sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))
    from sluice_client import Client
    from sluice_client.aws import AwsLogin, Credentials
    import botocore.session
    sts = botocore.session.get_session().create_client(
        "sts", region_name="us-east-1", endpoint_url=moto.url,
        aws_access_key_id="testing", aws_secret_access_key="testing")
    c = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/glue-ingest",
                        RoleSessionName="drift")["Credentials"]
    login = AwsLogin(server_id, "us-east-1", sts_endpoint=moto.url + "/",
                     credentials=Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]))
    client = Client(f"http://{address}", aws=login)
    client.call("GET", "/v1/tables")
    assert login.answer is not None
    return login.answer["role"], call(f"http://{address}/v1/tables", login.answer["token"])


class Drift(unittest.TestCase):
    def test_every_invocation_is_one_the_binary_accepts(self) -> None:
        invocations = (compose_invocations() + kubernetes_invocations({})
                       + dockerfile_invocations() + terraform_invocations())
        found = [p for inv in invocations for p in problems(inv)]
        self.assertEqual(found, [])
        # Enough was read for the check to mean something.
        wheres = " ".join(i.where for i in invocations)
        for expected in ["compose service migrate", "compose service sluice-b", "Job sluice-migrate",
                         "Deployment sluice", "Dockerfile HEALTHCHECK", "terraform command ['serve']",
                         "terraform command ['token', 'import'"]:
            self.assertIn(expected, wheres)

    def test_every_configuration_file_is_one_sluice_reads(self) -> None:
        texts = {}
        for inv in compose_invocations() + kubernetes_invocations({}):
            for path, text in inv.files.items():
                texts[f"{inv.where} {path}"] = text
        texts["deploy/sluice.toml"] = (DEPLOY / "sluice.toml").read_text()
        self.assertGreaterEqual(len(texts), 3)
        found = [p for where, text in texts.items() for p in check_config(where, text)]
        self.assertEqual(found, [])

    def test_every_terraform_variable_and_output_is_documented(self) -> None:
        module = DEPLOY / "terraform" / "aws"
        readme = (module / "README.md").read_text()
        names = (re.findall(r'(?m)^variable "([a-z0-9_]+)"', (module / "variables.tf").read_text())
                 + re.findall(r'(?m)^output "([a-z0-9_]+)"', (module / "outputs.tf").read_text()))
        self.assertGreater(len(names), 30)
        self.assertEqual([n for n in names if f"`{n}`" not in readme], [])

    def test_a_drifted_file_is_caught(self) -> None:
        # The checks can fail: a renamed flag, an unknown variable, a bad key.
        self.assertTrue(problems(Invocation("x", ["serve", "--no-such-flag"])))
        self.assertTrue(problems(Invocation("x", ["serve"], {"SLUICE__SERVER__BINDING": "x"})))
        self.assertTrue(problems(Invocation("x", ["sereve"])))
        self.assertTrue(check_config("x", "[server]\nbnd = 1\n"))
        self.assertFalse(problems(Invocation("x", ["token", "import", "--from-env", "MINE"], {"MINE": "v"})))

    def test_the_compose_stack_runs_as_written(self) -> None:
        invocations = compose_invocations()
        token = next(i.env["SLUICE_LAPTOP_TOKEN"] for i in invocations if "SLUICE_LAPTOP_TOKEN" in i.env)
        moto = Moto()
        database = fresh_database()
        stack = Stack(invocations, database, {"http://moto:5000": moto.url})
        try:
            addresses = stack.run(self)
            self.assertEqual(len(addresses), 2)
            for address in addresses:
                self.assertEqual(call(f"http://{address}/v1/tables", token), 200)
                self.assertEqual(call(f"http://{address}/v1/tables"), 401)
            # A job logs in with its role, as the stack's README shows: an
            # assumed role of moto's, signed for the endpoint sluice forwards to.
            self.assertEqual(iam_login(moto, addresses[1], "laptop"), ("job", 200))
            # One scheduler leader for the pair, seen alike from both
            # replicas: the write lease that elects it is held by one of the
            # two serve processes and the other waits for it (a holder's name
            # ends in its process id). The election takes a tick or two.
            replicas = sorted(f":{server.pid}" for server in stack.servers)
            deadline = time.monotonic() + 30
            while True:
                views = [scheduler_leases(address, token) for address in addresses]
                for holders, _ in views:
                    self.assertLessEqual(len(holders), 1, views)
                if (views[0] == views[1] and len(views[0][0]) == 1
                        and sorted(h[h.rindex(":"):] for h in views[0][0] + views[0][1]) == replicas):
                    break
                self.assertLess(time.monotonic(), deadline, f"no one leader of {replicas}: {views}")
                time.sleep(0.5)
        finally:
            stack.stop()
            moto.stop()
            drop_database(database)

    def test_the_kubernetes_job_and_deployment_run_as_written(self) -> None:
        token = "sluice_" + uuid.uuid4().hex[:16] + "_" + uuid.uuid4().hex + uuid.uuid4().hex
        database = fresh_database()
        invocations = kubernetes_invocations({"database-url": database, "admin-token": token})
        # The Job first (init container, then its container), then one replica.
        ordered = ([i for i in invocations if "Job" in i.where]
                   + [i for i in invocations if "Deployment" in i.where])
        stack = Stack(ordered, database, {})
        try:
            addresses = stack.run(self)
            self.assertEqual(len(addresses), 1)
            self.assertEqual(call(f"http://{addresses[0]}/v1/tables", token), 200)
            self.assertEqual(call(f"http://{addresses[0]}/v1/tables"), 401)
            # The Job again (the next `kubectl apply`): nothing to do, no error.
            again = Stack([i for i in invocations if "Job" in i.where], database, {})
            again.run(self)
        finally:
            stack.stop()
            drop_database(database)


if __name__ == "__main__":
    SLUICE, RENDERED = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"])
