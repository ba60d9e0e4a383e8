"""Supervision of the one-machine stack's parts, as an appliance's init would do it.

Each :class:`Part` has a start (returns when the part answers, or raises), a health check and
an optional ``before_restart`` (what must stop using the dead part first: the scoring worker's
calls into the old Ray cluster) and ``after_restart`` (what the platform must redo once the part
is back: the memory-only broker lost its topics, so they are re-created and the unscored segments
re-announced). The
:class:`Supervisor` checks every part each ``interval_s``; a part whose check fails is restarted
with exponential backoff; more than ``budget`` restarts within ``window_s`` (or a part that
cannot start again) stop supervision with a reason that names the part, and :attr:`failed` is
set so ``vigil up`` / ``vigil demo`` stop and exit non-zero. Every state change is one log line
and a metric, never a flood: a part that stays down is logged once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger("vigil.supervisor")

PART_UP = Gauge("vigil_stack_part_up", "1 while the embedded part answers its health check", ["part"])
PART_RESTARTS = Counter("vigil_stack_part_restarts_total", "Restarts of an embedded part", ["part"])


@dataclass
class Part:
    name: str
    start: Callable[[], Any]  # (re)starts it and returns once it answers; raises when it cannot
    check: Callable[[], bool]  # True while healthy
    after_restart: Callable[[], Any] | None = None
    before_restart: Callable[[], Any] | None = None
    # what the part restart did (e.g. {"reannounced": 12}); summed into the stack's summary
    results: dict[str, int] = field(default_factory=dict)


@dataclass
class PartState:
    state: str = "up"  # up | down | failed
    since: float = field(default_factory=time.time)
    restarts: int = 0
    last_error: str | None = None
    down_for_s: list[float] = field(default_factory=list)  # each outage: down to up again

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "restarts": self.restarts, "last_error": self.last_error,
                "recovery_s": [round(x, 2) for x in self.down_for_s]}


class Supervisor:
    def __init__(self, parts: list[Part], *, budget: int = 5, window_s: float = 600.0, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 30.0, interval_s: float = 1.0,
                 on_change: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> None:
        self.parts = {p.name: p for p in parts}
        self.states = {p.name: PartState() for p in parts}
        self.budget, self.window_s = budget, window_s
        self.backoff_initial_s, self.backoff_max_s, self.interval_s = backoff_initial_s, backoff_max_s, interval_s
        self.on_change = on_change
        self.failed = threading.Event()
        self.reason: str | None = None
        self.stop = threading.Event()
        self._recent: dict[str, deque[float]] = {p.name: deque() for p in parts}
        self._next_try: dict[str, float] = {}
        self._delay: dict[str, float] = {}
        self._down_at: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        for p in parts:
            PART_UP.labels(p.name).set(1)

    def add(self, part: Part) -> None:
        """Supervise one more part from now on (one started after the stack: the API, the worker)."""
        self.states[part.name] = PartState()
        self._recent[part.name] = deque()
        self.parts = {**self.parts, part.name: part}  # a new dict: poll_once iterates the old one safely
        PART_UP.labels(part.name).set(1)
        self._changed()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: st.as_dict() for name, st in self.states.items()}

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.snapshot())
            except Exception as exc:  # noqa: BLE001  the state file is a report, never a reason to stop
                log.warning("supervisor: state not recorded: %s", exc)

    def _fail(self, name: str, reason: str) -> None:
        st = self.states[name]
        st.state, st.since, st.last_error = "failed", time.time(), reason
        PART_UP.labels(name).set(0)
        self.reason = f"{name}: {reason}"
        log.error("stack part %s failed for good: %s", name, reason)
        self.failed.set()
        self._changed()

    def poll_once(self) -> None:
        now = time.monotonic()
        for name, part in list(self.parts.items()):
            st = self.states[name]
            if st.state == "failed":
                continue
            if st.state == "up":
                try:
                    ok = part.check()
                except Exception:  # noqa: BLE001
                    ok = False
                if ok:
                    continue
                st.state, st.since = "down", time.time()
                self._down_at[name] = now
                self._delay[name] = self.backoff_initial_s
                self._next_try[name] = now  # the first restart at once; backoff from the second
                PART_UP.labels(name).set(0)
                log.warning("stack part %s is down; restarting it", name)
                self._changed()
            if now < self._next_try[name]:
                continue
            recent = self._recent[name]
            while recent and now - recent[0] > self.window_s:
                recent.popleft()
            if len(recent) >= self.budget:
                self._fail(name, f"restarted {len(recent)} times within {self.window_s:.0f} s (the restart budget); "
                           f"last error: {st.last_error or 'it kept dying'}")
                continue
            recent.append(now)
            st.restarts += 1
            PART_RESTARTS.labels(name).inc()
            try:
                if part.before_restart is not None:
                    part.before_restart()
                part.start()
            except Exception as exc:  # noqa: BLE001  it cannot start: back off, count it
                st.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self._next_try[name] = time.monotonic() + self._delay[name]
                self._delay[name] = min(self._delay[name] * 2, self.backoff_max_s)
                if len(recent) >= self.budget:
                    self._fail(name, f"could not be started again ({st.last_error})")
                continue
            if part.after_restart is not None:
                try:
                    done = part.after_restart() or {}
                    for k, v in done.items():
                        part.results[k] = part.results.get(k, 0) + int(v)
                except Exception as exc:  # noqa: BLE001  up, but its recovery did not finish: say so
                    st.last_error = f"after restart: {type(exc).__name__}: {exc}"[:500]
                    log.error("stack part %s is back but its recovery failed: %s", name, exc)
            down_s = time.monotonic() - self._down_at.pop(name, now)
            st.down_for_s.append(down_s)
            st.state, st.since = "up", time.time()
            PART_UP.labels(name).set(1)
            log.info("stack part %s is up again after %.1f s (restart %d)", name, down_s, st.restarts)
            self._changed()

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.poll_once()
            if self.failed.is_set():
                return

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="stack-supervisor", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(60)


class MainThread:
    """Runs, on the main thread, what other threads must not do themselves: Ray's driver can only
    be shut down and started again cleanly from the thread that started it (from another one,
    the dead head's client lingers and kills the process 60 s later). The supervisor's thread
    hands the call over with :meth:`call`; the main loop runs it in :meth:`serve`."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()

    def call(self, fn: Callable[[], Any], timeout_s: float = 600.0) -> Any:
        fut: Future = Future()
        self._calls.put((fn, fut))
        return fut.result(timeout_s)

    def serve(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for a call and run it (the main loop's sleep)."""
        try:
            fn, fut = self._calls.get(timeout=wait_s)
        except queue.Empty:
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001  handed back to the caller
            fut.set_exception(exc)
