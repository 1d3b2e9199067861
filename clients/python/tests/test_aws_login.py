"""IAM authentication end to end, against moto's STS: a Glue-job-shaped
script holds an assumed role's credentials, logs in to sluice through the
client, gets the role and scopes its rule maps, and holds a lease; each
refusal (another deployment's header, an old signature, a request used
once already, an unknown ARN, a request that is not GetCallerIdentity, one
signed for another endpoint, a header that cannot be sent) is
a 4xx with the JSON body, and is audited in sluice's log."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from typing import Any, Dict, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from sluice_client import Client, Forbidden  # noqa: E402
from sluice_client import aws  # noqa: E402
from sluice_server import ROOT, Server, binary, free_port  # noqa: E402

SERVER_ID = "sluice-test-eu"
ACCOUNT = "123456789012"
# sluice's log is tracing's, coloured even in a file.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Moto:
    def __init__(self) -> None:
        path = os.path.join(ROOT, ".venv-ingest", "bin", "moto_server")
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: run scripts/ensure-venv.sh .venv-ingest ...")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen([path, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "moto-api/", timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def assume(self, role: str, session: str) -> aws.Credentials:
        """AssumeRole, as Glue does for a job's role."""
        sts = importlib.import_module("botocore.session").get_session().create_client(
            "sts", region_name="us-east-1", endpoint_url=self.url,
            aws_access_key_id="testing", aws_secret_access_key="testing")
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                            RoleSessionName=session)["Credentials"]
        return aws.Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def post(url: str, body: Dict[str, Any], timeout: float = 10) -> Tuple[int, Dict[str, Any]]:
    request = urllib.request.Request(url + "/v1/auth/aws", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class IamLogin(unittest.TestCase):
    moto: Moto
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.moto = Moto()
        cls.server = Server("--auth", "on", "--aws-auth-server-id", SERVER_ID,
                            "--aws-auth-sts-endpoint", cls.moto.url,
                            "--aws-auth-token-ttl-seconds", "60")
        storage = cls.server.args[cls.server.args.index("--data-dir"):][:2]
        for rule in (["--aws-arn", "arn:aws:iam::*:role/glue-ingest-*", "--role", "job",
                      "--scope", "sales."],
                     ["--aws-arn", f"arn:aws:iam::{ACCOUNT}:role/glue-ingest-admin", "--role", "admin"]):
            subprocess.run([binary(), "principal", "create", *rule, *storage], check=True,
                           capture_output=True)
        admin = Client(cls.server.url, cls.server.token("setup", "admin"))
        for table in ("sales.orders", "hr.people"):
            admin.put_table(table)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()
        cls.moto.close()

    def login(self, role: str, session: str = "jr_1", **options: Any) -> aws.AwsLogin:
        return aws.AwsLogin(SERVER_ID, "us-east-1", sts_endpoint=self.moto.url,
                            credentials=self.moto.assume(role, session), **options)

    def test_a_glue_job_logs_in_with_its_role_and_holds_a_lease(self) -> None:
        login = self.login("glue-ingest-sales")
        client = Client(self.server.url, aws=login)
        with client.read_lease("sales.orders", ttl=30) as lease:
            self.assertGreater(lease.token, 0)
        assert login.answer is not None
        self.assertEqual((login.answer["role"], login.answer["scopes"]), ("job", ["sales."]))
        self.assertEqual(login.answer["arn"],
                         f"arn:aws:sts::{ACCOUNT}:assumed-role/glue-ingest-sales/jr_1")
        self.assertEqual(login.answer["principal"],
                         f"aws:arn:aws:sts::{ACCOUNT}:assumed-role/glue-ingest-sales/jr_1")
        # Its scopes hold: another namespace is refused.
        with self.assertRaises(Forbidden):
            client.read_lease("hr.people", ttl=30).__enter__()
        # The event log names the identity as the lease's caller.
        admin = Client(self.server.url, aws=self.login("glue-ingest-admin", "ops"))
        events = admin.call("GET", "/v1/events", query={"table": "sales.orders"})["events"]
        actors = {e.get("actor") for e in events}
        self.assertIn(login.answer["principal"], actors)
        self.assertEqual(login.logins, 1, "one login served every call")

    def test_a_job_sluice_started_logs_in_from_its_arguments_alone(self) -> None:
        # What a Glue run sees: its arguments (as sluice's scheduler passes
        # them) and its role's credentials in the environment, no token.
        from sluice_client import from_glue_args
        creds = self.moto.assume("glue-ingest-orders", "jr_glue")
        env = {"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key,
               "AWS_SESSION_TOKEN": str(creds.token), "AWS_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
        argv = ["job.py", "--sluice-url", self.server.url, "--sluice-run-id", "r1/1",
                "--sluice-aws-server-id", SERVER_ID, "--sluice-aws-sts-endpoint", self.moto.url]
        saved = {k: os.environ.get(k) for k in [*env, "SLUICE_TOKEN"]}
        os.environ.update(env)
        os.environ.pop("SLUICE_TOKEN", None)
        try:
            client = from_glue_args(argv).client()
            with client.read_lease("sales.orders", ttl=30) as lease:
                self.assertGreater(lease.token, 0)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def test_the_token_is_renewed_before_it_expires_and_keeps_its_leases(self) -> None:
        # The server's tokens live 60 s: renewed at half their life at the
        # latest; here a new login is forced under a held lease.
        login = self.login("glue-ingest-sales", "jr_renew")
        client = Client(self.server.url, aws=login)
        with client.write_lease("sales.orders", ttl=30) as lease:
            first = login.answer
            login.invalidate()
            lease.heartbeat()
            # The same identity, so the same principal: it still owns the lease.
        self.assertEqual(login.logins, 2)
        assert first is not None and login.answer is not None
        self.assertNotEqual(first["token"], login.answer["token"])
        self.assertEqual(first["principal"], login.answer["principal"])
        # A token sluice no longer takes (revoked) is replaced by a new login.
        storage = self.server.args[self.server.args.index("--data-dir"):][:2]
        listed = subprocess.run([binary(), "token", "list", *storage], check=True,
                                capture_output=True, text=True).stdout.splitlines()
        for name in [line.split()[0] for line in listed if "jr_renew#" in line]:
            subprocess.run([binary(), "token", "revoke", "--name", name, *storage], check=True,
                           capture_output=True)
        time.sleep(5.5)  # the servers' token cache
        client.table("sales.orders")
        self.assertEqual(login.logins, 3)

    def signed(self, role: str = "glue-ingest-sales", server_id: str = SERVER_ID,
               at: datetime.datetime | None = None) -> Dict[str, Any]:
        credentials = self.moto.assume(role, "jr_2")
        headers = {"Content-Type": aws.CONTENT_TYPE, aws.SERVER_ID_HEADER: server_id}
        now = at or datetime.datetime.now(datetime.timezone.utc)
        signed = aws.sign_sigv4(self.moto.url, headers, aws.BODY, credentials, "us-east-1", now)
        return {"method": "POST", "url": self.moto.url, "headers": signed, "body": aws.BODY}

    def refused(self, body: Dict[str, Any], status: int, kind: str) -> None:
        # Only the log written after this request counts: an earlier case
        # refused with the same kind must not pass for this one's audit line.
        start = len(self.server.log_text())
        got, answer = post(self.server.url, body)
        self.assertEqual((got, answer["error"]["type"]), (status, kind), answer)
        audited = f'sluice::audit: aws login refused kind="{kind}"'
        deadline = time.monotonic() + 5
        while audited not in ANSI.sub("", self.server.log_text()[start:]):
            self.assertLess(time.monotonic(), deadline, f"{kind} was not audited")
            time.sleep(0.05)

    def test_each_refusal_is_a_4xx_with_the_json_body_and_audited(self) -> None:
        once = self.signed()
        self.assertEqual(post(self.server.url, once)[0], 200)
        # The same signed request again (a replay within its window): each
        # logs in once.
        self.refused(once, 401, "login_replayed")
        # Signed for another deployment: a replay across servers.
        self.refused(self.signed(server_id="sluice-staging"), 401, "wrong_server_id")
        # Signed ten minutes ago.
        old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
        self.refused(self.signed(at=old), 401, "signature_expired")
        # A real identity no rule maps.
        self.refused(self.signed(role="analyst"), 403, "unknown_aws_identity")
        # Not GetCallerIdentity: never forwarded.
        other = self.signed()
        other["body"] = "Action=AssumeRole&Version=2011-06-15&RoleArn=x"
        self.refused(other, 400, "invalid_aws_request")
        # Signed for another STS endpoint than the server's.
        elsewhere = self.signed()
        elsewhere["headers"]["Host"] = "sts.amazonaws.com"
        self.refused(elsewhere, 400, "invalid_aws_request")
        # The server-id header present but not signed.
        unsigned = self.signed()
        auth = unsigned["headers"]["Authorization"]
        unsigned["headers"]["Authorization"] = auth.replace(";x-sluice-server-id", "")
        self.refused(unsigned, 401, "wrong_server_id")
        # A header name or value that cannot be sent: 400, never forwarded.
        for name, value in (("X Bad", "1"), ("X-Ok", "a\r\nX-Injected: 1")):
            broken = self.signed()
            broken["headers"][name] = value
            self.refused(broken, 400, "invalid_aws_request")
        # Bad JSON shapes are the usual 4xx.
        got, answer = post(self.server.url, {"method": "POST"})
        self.assertEqual(got, 422, answer)


class Overload(unittest.TestCase):
    def test_logins_past_the_in_flight_bound_are_refused_with_429(self) -> None:
        # An STS that takes connections and never answers: every login
        # forwarded to it stays in flight until sluice's 10 s timeout.
        import socket
        import threading
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(128)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        server = Server("--auth", "on", "--aws-auth-server-id", SERVER_ID,
                        "--aws-auth-sts-endpoint", endpoint)
        try:
            credentials = aws.Credentials("AKIDEXAMPLE", "secret")
            headers = {"Content-Type": aws.CONTENT_TYPE, aws.SERVER_ID_HEADER: SERVER_ID}
            results: list = []

            def one() -> None:
                signed = aws.sign_sigv4(endpoint, headers, aws.BODY, credentials, "us-east-1",
                                        datetime.datetime.now(datetime.timezone.utc))
                body = {"method": "POST", "url": endpoint, "headers": signed, "body": aws.BODY}
                # Longer than sluice's own 10 s wait for STS.
                results.append(post(server.url, body, timeout=30))

            threads = [threading.Thread(target=one) for _ in range(48)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            kinds = sorted(answer["error"]["type"] for _, answer in results)
            statuses = {(status, answer["error"]["type"]) for status, answer in results}
            self.assertEqual(len(results), 48)
            self.assertLessEqual(statuses, {(429, "too_many_logins"), (503, "sts_unavailable")})
            self.assertEqual(kinds.count("sts_unavailable"), 32, kinds)
        finally:
            server.close()
            silent.close()


class Disabled(unittest.TestCase):
    def test_without_a_server_id_the_route_says_it_is_off(self) -> None:
        server = Server("--auth", "on")
        try:
            got, answer = post(server.url, {"method": "POST", "url": "x", "headers": {}, "body": ""})
            self.assertEqual((got, answer["error"]["type"]), (404, "aws_auth_disabled"))
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
