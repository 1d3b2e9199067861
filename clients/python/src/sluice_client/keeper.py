"""The background heartbeat of something held (a lease, a batch): it beats
every third of the TTL and sets `lost` the moment sluice says the thing is
gone, or when sluice stayed out of reach until the TTL ran out (then it may
be gone, and the holder must act as if it were: fail closed)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Type

from .errors import ApiError, ConnectionFailed, Lost
from .transport import Retry


class Keeper:
    def __init__(self, what: str, ttl: float, beat: Callable[[Retry], None]) -> None:
        self.what = what
        self.ttl = ttl
        self._beat = beat
        self.lost = threading.Event()
        self.reason: Optional[str] = None
        self.cause: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # When the server's TTL runs out at the latest, by our clock: the
        # last successful beat's send time plus the TTL.
        self._expires = time.monotonic() + ttl

    def start(self, granted_at: float) -> None:
        self._expires = granted_at + self.ttl
        self._thread = threading.Thread(target=self._run, name=f"sluice-{self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def mark_lost(self, reason: str, cause: Optional[BaseException] = None) -> None:
        if not self.lost.is_set():
            self.reason, self.cause = reason, cause
            self.lost.set()

    def check(self, kind: Type[Lost], what: str) -> None:
        """Raise `kind` if what is held is gone."""
        if self.lost.is_set():
            raise kind(what, self.reason or "gone", self.cause)

    def beat_now(self) -> None:
        """One heartbeat, in the caller's thread (errors are raised)."""
        sent = time.monotonic()
        self._beat(Retry(attempts=3, seconds=max(0.5, self._expires - sent)))
        self._expires = sent + self.ttl

    def _run(self) -> None:
        interval = max(self.ttl / 3.0, 0.2)
        while not self._stop.wait(interval):
            while not self._stop.is_set():
                left = self._expires - time.monotonic()
                if left <= 0:
                    self.mark_lost(f"sluice could not be reached before the {self.what}'s TTL ran out")
                    return
                try:
                    self.beat_now()
                    break
                except ApiError as e:
                    if e.status in (429, 503):
                        continue
                    self.mark_lost(e.type, e)
                    return
                except ConnectionFailed:
                    # Keep trying until the TTL is out: a restart of sluice
                    # lasts seconds and the lease survives it.
                    self._stop.wait(min(0.5, max(0.0, left)))
