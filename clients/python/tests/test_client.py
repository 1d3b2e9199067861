"""The client against a real sluice binary: leases that fail closed, stream
batches through a sluice restart, typed errors, retries and Glue arguments.

Run: SLUICE_BIN=target/debug/sluice python3 -m unittest discover -s clients/python/tests
"""

from __future__ import annotations

import os
import sys
import threading
import time
import unittest
from typing import Any, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from sluice_client import (BatchLost, Client, Conflict, ConnectionFailed, Forbidden,  # noqa: E402
                           LeaseLost, LeaseTimeout, NotFound, Retry, SessionLost, SluiceError,
                           Unauthorized, from_glue_args)
from sluice_server import Server  # noqa: E402

LOAD = {"load": {"files_done": ["LOAD00000001.csv"], "cdc_start": None}}


def until(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("never became true")
        time.sleep(0.05)


class WithServer(unittest.TestCase):
    """One sluice process for the class's tests (each uses its own names)."""

    server: Server
    client: Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()
        cls.client = Client(cls.server.url)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()


class Leases(WithServer):
    def setUp(self) -> None:
        self.table = f"sales.t{time.monotonic_ns()}"
        self.client.put_table(self.table)

    def holders(self) -> List[Dict[str, Any]]:
        return list(self.client.table_leases(self.table)["holders"])

    def test_the_block_runs_under_a_granted_lease_that_is_released_on_exit(self) -> None:
        with self.client.read_lease(self.table, ttl=30) as lease:
            self.assertGreater(lease.token, 0)
            self.assertEqual([h["lease_id"] for h in self.holders()], [lease.lease_id])
            lease.check()
        self.assertEqual(self.holders(), [])
        self.assertEqual(self.client.lease(lease.lease_id)["state"], "released")

    def test_an_exception_in_the_block_still_releases_and_propagates(self) -> None:
        with self.assertRaises(ZeroDivisionError):
            with self.client.write_lease(self.table, ttl=30):
                1 / 0
        self.assertEqual(self.holders(), [])

    def test_a_lease_not_granted_in_time_never_enters_the_block(self) -> None:
        entered = []
        with self.client.write_lease(self.table, ttl=30):
            with self.assertRaises(LeaseTimeout):
                with self.client.read_lease(self.table, ttl=30, wait=1):
                    entered.append(True)
            # It left the queue: nothing of it is waiting.
            self.assertEqual(self.client.table_leases(self.table)["waiters"], [])
        self.assertEqual(entered, [])

    def test_a_writer_waits_by_long_poll_until_the_readers_leave(self) -> None:
        order: List[str] = []
        reader = self.client.read_lease(self.table, ttl=30).acquire()

        def write() -> None:
            with self.client.write_lease(self.table, ttl=30, wait=30) as w:
                order.append(f"writer {w.token}")

        thread = threading.Thread(target=write)
        thread.start()
        until(lambda: len(self.client.table_leases(self.table)["waiters"]) == 1)
        order.append("reader leaves")
        reader.release()
        thread.join(30)
        self.assertEqual(order, ["reader leaves", f"writer {reader.token + 1}"])

    def test_a_lease_revoked_mid_block_sets_lost_and_the_block_cannot_succeed(self) -> None:
        with self.assertRaises(LeaseLost) as raised:
            with self.client.write_lease(self.table, ttl=3) as lease:
                self.client.revoke_lease(lease.lease_id, "operator: bad job")
                # The next heartbeat (a third of the TTL) learns it.
                self.assertTrue(lease.lost.wait(5), "the heartbeat never noticed")
                with self.assertRaises(LeaseLost):
                    lease.check()
        self.assertEqual(raised.exception.reason, "lease_revoked")

    def test_the_heartbeat_keeps_a_short_lease_alive_past_its_ttl(self) -> None:
        with self.client.read_lease(self.table, ttl=2) as lease:
            time.sleep(4.5)
            lease.check()
            self.assertEqual(self.client.lease(lease.lease_id)["state"], "granted")

    def test_a_lease_survives_a_sluice_restart(self) -> None:
        with self.client.write_lease(self.table, ttl=10) as lease:
            self.server.kill9()
            time.sleep(1)
            self.server.start()
            lease.heartbeat()
            self.assertFalse(lease.lost.is_set())
        self.assertEqual(self.client.lease(lease.lease_id)["state"], "released")


class Hydrations(WithServer):
    """A copy outlives the runs of its job: each `with` block is a session."""

    def setUp(self) -> None:
        self.table = f"sales.h{time.monotonic_ns()}"
        self.client.put_table(self.table)
        self.client.call("PUT", "/v1/containers/analytics",
                         {"kind": "glue", "database": "analytics"})

    def test_a_second_run_resumes_the_copy_with_a_new_session(self) -> None:
        with self.client.hydration(self.table, "analytics", "orders_v1", run_id="r1") as first:
            self.assertFalse(first.resumed)
            self.assertEqual((first.state, first.token), ("pending", 1))
            self.assertTrue(first.in_first_hydration)
            # Another run is refused while r1 is attached, naming it.
            other = self.client.hydration(self.table, "analytics", "orders_v1", run_id="r2")
            with self.assertRaises(Conflict) as refused:
                other.start()
            self.assertEqual(refused.exception.type, "session_held")
            self.assertIn("r1", str(refused.exception))
        self.assertIsNone(self.client.get_hydration(first.id)["session"])
        with self.client.hydration(self.table, "analytics", "orders_v1", run_id="r2") as second:
            self.assertTrue(second.resumed)
            self.assertEqual((second.id, second.token), (first.id, 2))
            # The same run attaching again (a retried attempt) gets its
            # session back.
            again = self.client.call("POST", f"/v1/hydrations/{second.id}/attach",
                                     {"run_id": "r2"})
            self.assertEqual(again["session"]["token"], 2)
        # A run of sluice's resumes the copy under its own run id.
        args = from_glue_args(["--sluice-run-id", "run-9/2"])
        with args.hydration(self.client, self.table, "analytics", "orders_v1") as third:
            self.assertEqual((third.id, third.run_id, third.token), (first.id, "run-9", 3))

    def test_a_session_taken_over_is_lost_and_its_reports_refused(self) -> None:
        h = self.client.hydration(self.table, "analytics", "orders_v2", run_id="r1",
                                  session_ttl=1)
        with self.assertRaises(SessionLost) as lost:
            with h:
                h._keeper.stop()  # the run hangs: no more heartbeats
                time.sleep(1.5)
                with self.client.hydration(self.table, "analytics", "orders_v2",
                                           run_id="r2") as taker:
                    self.assertEqual(taker.token, 2)
                # Told before sluice reads any catalog for the report.
                h.progress(phase="snapshot", snapshot_id=1)
        self.assertEqual(lost.exception.reason, "session_stale")
        self.assertTrue(h.lost.is_set())


class Batches(WithServer):
    def setUp(self) -> None:
        self.stream = f"sales.s{time.monotonic_ns()}"
        self.client.put_table(self.stream + "_t")
        self.client.put_stream(self.stream, table=self.stream + "_t")

    def test_a_batch_hands_the_bookmark_and_commits_the_next_version(self) -> None:
        with self.client.batch(self.stream, run_id="r1", ttl=30) as batch:
            self.assertEqual(batch.bookmark["phase"], "load")
            result = batch.commit(bookmark=LOAD, counts={"inserted": 3})
        self.assertEqual(result["bookmark"]["version"], 2)
        with self.client.batch(self.stream, run_id="r2", ttl=30) as batch:
            self.assertEqual(batch.bookmark["load"]["files_done"], ["LOAD00000001.csv"])
            batch.commit(bookmark={"load": {"files_done": ["LOAD00000001.csv"]}},
                         load_complete=True)
        self.assertEqual(self.client.bookmark(self.stream)["phase"], "delta")

    def test_an_exception_fails_the_batch_and_the_next_run_starts_at_once(self) -> None:
        with self.assertRaises(ValueError):
            with self.client.batch(self.stream, run_id="r1", ttl=300) as batch:
                raise ValueError("bad file")
        failed = self.client.call("GET", f"/v1/streams/{self.stream}/batches/{batch.batch_id}")
        self.assertEqual(failed["state"], "failed")
        self.assertIn("bad file", failed["end_reason"])
        with self.client.batch(self.stream, run_id="r2", wait=0) as second:
            self.assertEqual(second.bookmark["version"], 1)

    def test_a_block_that_ends_without_a_commit_gives_the_batch_back(self) -> None:
        with self.client.batch(self.stream, run_id="r1", ttl=300):
            pass
        self.assertEqual(self.client.bookmark(self.stream)["version"], 1)
        with self.client.batch(self.stream, run_id="r2", wait=0):
            pass

    def test_a_second_run_waits_for_the_open_batch_then_times_out(self) -> None:
        with self.client.batch(self.stream, run_id="r1", ttl=30):
            with self.assertRaises(LeaseTimeout):
                with self.client.batch(self.stream, run_id="r2", wait=1):
                    self.fail("entered without the batch")

    def test_a_batch_taken_over_is_lost_and_its_commit_refused(self) -> None:
        batch = self.client.batch(self.stream, run_id="r1", ttl=2).open()
        batch._keeper.stop()  # a stalled worker: no more heartbeats
        time.sleep(2.5)
        with self.client.batch(self.stream, run_id="r2", wait=5) as other:
            other.commit(bookmark=LOAD)
        with self.assertRaises(BatchLost) as raised:
            batch.commit(bookmark=LOAD)
        self.assertIn(raised.exception.reason, ("batch_expired", "batch_finished", "stale_token"))
        self.assertEqual(self.client.bookmark(self.stream)["version"], 2)

    def test_a_sluice_restart_during_a_batch_does_not_lose_it(self) -> None:
        with self.client.batch(self.stream, run_id="r1", ttl=10) as batch:
            self.server.kill9()
            # The commit is sent while sluice is down: it is retried.
            threading.Timer(1.5, self.server.start).start()
            result = batch.commit(bookmark=LOAD, counts={"inserted": 1})
        self.assertEqual(result["bookmark"]["version"], 2)
        self.assertFalse(batch.lost.is_set())
        history = self.client.call("GET", f"/v1/streams/{self.stream}/bookmark/history")
        self.assertEqual([v["cause"] for v in history["versions"]], ["created", "batch"])


class Errors(unittest.TestCase):
    def test_refusals_are_typed_and_carry_the_server_error_type(self) -> None:
        server = Server()
        try:
            client = Client(server.url)
            with self.assertRaises(NotFound) as missing:
                client.table("sales.nothing")
            self.assertEqual((missing.exception.status, missing.exception.type),
                             (404, "table_not_found"))
            client.put_table("sales.orders")
            lease = client.write_lease("sales.orders", ttl=30).acquire()
            with self.assertRaises(Conflict) as stale:
                client.call("DELETE", f"/v1/leases/{lease.lease_id}",
                            query={"token": lease.token + 5})
            self.assertEqual(stale.exception.type, "stale_token")
            with self.assertRaises(NotFound) as job:
                client.start_run("nightly")
            self.assertEqual(job.exception.type, "job_not_found")
            lease.release()
        finally:
            server.close()

    def test_tokens_roles_and_the_environment(self) -> None:
        server = Server("--auth", "on")
        try:
            with self.assertRaises(Unauthorized):
                Client(server.url, "wrong").table("sales.orders")
            job = server.token("ingest", "job")
            os.environ["SLUICE_URL"], os.environ["SLUICE_TOKEN"] = server.url, job
            try:
                with self.assertRaises(Forbidden) as refused:
                    Client().put_container("analytics", kind="postgres", url="postgres://x/y")
                self.assertEqual(refused.exception.status, 403)
            finally:
                del os.environ["SLUICE_URL"], os.environ["SLUICE_TOKEN"]
        finally:
            server.close()

    def test_connection_errors_are_retried_until_sluice_answers(self) -> None:
        server = Server()
        try:
            server.kill9()
            threading.Timer(1.0, server.start).start()
            answer = Client(server.url).put_table("sales.later")
            self.assertEqual(answer["table"], "sales.later")
            server.kill9()
            quick = Client(server.url, retry=Retry(attempts=2, seconds=1))
            with self.assertRaises(ConnectionFailed):
                quick.table("sales.later")
        finally:
            server.close()


class GlueArguments(unittest.TestCase):
    def test_the_arguments_sluice_starts_a_compaction_run_with(self) -> None:
        argv = ["compact.py", "--JOB_ID", "j_1", "--sluice-url", "http://sluice:7878",
                "--sluice-run-id", "0190aaaa/2", "--sluice-lease-id", "0190bbbb",
                "--sluice-token", "17", "--sluice-table", "sales.orders",
                "--sluice-base-snapshot-id", "42", "--job-bookmark-option=job-bookmark-disable",
                "--SLUICE_TOKEN", "secret"]
        glue = from_glue_args(argv)
        self.assertEqual((glue.url, glue.run_id, glue.attempt), ("http://sluice:7878", "0190aaaa", 2))
        self.assertEqual((glue.lease_id, glue.token, glue.table, glue.base_snapshot_id),
                         ("0190bbbb", 17, "sales.orders", 42))
        self.assertIsNone(glue.expire_older_than)
        self.assertEqual(glue.arguments["job-bookmark-option"], "job-bookmark-disable")
        self.assertEqual(glue.snapshot_properties(),
                         {"sluice.lease-token": "17", "sluice.lease-id": "0190bbbb"})
        self.assertEqual(glue.client().url, "http://sluice:7878")

    def test_a_sluice_argument_given_twice_is_refused_not_guessed(self) -> None:
        # A caller's argument that smuggles a second --sluice-url (sluice
        # refuses such values; a job never takes the later one either).
        for smuggled in (["--zz", "--sluice-url=http://attacker"],
                         ["--sluice-url", "http://attacker"],
                         ["--sluice-aws-sts-endpoint=http://attacker"]):
            argv = ["job.py", "--sluice-url", "http://sluice:7878",
                    "--sluice-aws-sts-endpoint", "http://sts", *smuggled]
            with self.assertRaises(SluiceError, msg=str(smuggled)):
                from_glue_args(argv)


if __name__ == "__main__":
    unittest.main()
