"""A real sluice process for the client's tests: the binary at $SLUICE_BIN
(default: the workspace's debug build), on SQLite in a temporary folder."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import List, Optional

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def binary() -> str:
    path = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "target", "debug", "sluice")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: run `cargo build -p sluice` first")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="sluice-client-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args: List[str] = [binary(), "serve", "--bind", f"127.0.0.1:{self.port}",
                                "--data-dir", os.path.join(self.dir.name, "data"), *extra]
        self.log = open(os.path.join(self.dir.name, "sluice.log"), "ab")
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> None:
        env = dict(os.environ, RUST_LOG="warn")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"sluice exited: {self.log_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"sluice not ready: {self.log_text()}")

    def kill9(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def token(self, name: str, role: str) -> str:
        storage = self.args[self.args.index("--data-dir"):][:2]
        out = subprocess.run([binary(), "token", "create", "--name", name, "--role", role, *storage],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def log_text(self) -> str:
        with open(os.path.join(self.dir.name, "sluice.log"), errors="replace") as f:
            return f.read()

    def close(self) -> None:
        self.kill9()
        self.log.close()
        self.dir.cleanup()
