"""The supervisor's state machine on parts that die, come back, or cannot start."""

from __future__ import annotations

import logging
import time

from infra.supervisor import Part, Supervisor


class Flaky:
    def __init__(self, start_failures: int = 0) -> None:
        self.alive, self.starts, self.start_failures = True, 0, start_failures

    def start(self) -> None:
        self.starts += 1
        if self.start_failures:
            self.start_failures -= 1
            raise FileNotFoundError("broker binary missing")
        self.alive = True

    def check(self) -> bool:
        return self.alive


def _sv(parts, **kw):
    kw = {"budget": 3, "window_s": 60, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "interval_s": 0.01, **kw}
    return Supervisor(parts, **kw)


def _poll_until(sv, cond, timeout=5.0):
    t = time.monotonic() + timeout
    while time.monotonic() < t and not cond():
        sv.poll_once()
        time.sleep(0.01)
    assert cond()


def test_a_dead_part_is_restarted_and_its_recovery_runs_once_per_restart(caplog):
    broker, recovered = Flaky(), []
    changes = []
    sv = _sv([Part("kafka", broker.start, broker.check, after_restart=lambda: recovered.append(1) or {"reannounced": 7})],
             on_change=changes.append)
    caplog.set_level(logging.INFO, logger="vigil.supervisor")
    sv.poll_once()
    assert broker.starts == 0 and sv.states["kafka"].state == "up"
    for _ in range(2):
        broker.alive = False
        _poll_until(sv, lambda: broker.alive)
    st = sv.states["kafka"]
    assert (st.state, st.restarts, len(st.down_for_s)) == ("up", 2, 2) and recovered == [1, 1]
    assert sv.parts["kafka"].results == {"reannounced": 14}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("is down" in m for m in lines) == 2 and sum("is up again" in m for m in lines) == 2  # one a change
    assert [c["kafka"]["state"] for c in changes] == ["down", "up", "down", "up"]
    assert not sv.failed.is_set()


def test_before_restart_runs_before_each_start_and_after_restart_after_it():
    order: list[str] = []
    ray = Flaky()
    start = ray.start
    sv = _sv([Part("ray", lambda: (order.append("start"), start()), ray.check,
                   before_restart=lambda: order.append("before"), after_restart=lambda: order.append("after"))])
    ray.alive = False
    _poll_until(sv, lambda: ray.alive)
    assert order == ["before", "start", "after"]


def test_a_part_that_cannot_start_backs_off_then_stops_the_stack_naming_it(caplog):
    s3 = Flaky(start_failures=100)
    sv = _sv([Part("s3", s3.start, s3.check)], budget=3)
    s3.alive = False
    caplog.set_level(logging.WARNING, logger="vigil.supervisor")
    _poll_until(sv, sv.failed.is_set)
    assert s3.starts == 3 and sv.states["s3"].state == "failed"
    assert sv.reason.startswith("s3: could not be started again (FileNotFoundError: broker binary missing)")
    assert sum("is down" in r.getMessage() for r in caplog.records) == 1  # no flood while it stays down
    sv.poll_once()
    assert s3.starts == 3  # failed for good: no more tries


def test_a_part_dying_past_its_budget_in_the_window_stops_the_stack():
    p = Flaky()
    sv = _sv([Part("ray", p.start, p.check)], budget=2)
    for _ in range(2):
        p.alive = False
        _poll_until(sv, lambda: p.alive)
    p.alive = False
    _poll_until(sv, sv.failed.is_set)
    assert "restarted 2 times within 60 s" in sv.reason and sv.states["ray"].restarts == 2


def test_backoff_spaces_the_tries_of_a_part_that_keeps_failing_to_start():
    p = Flaky(start_failures=2)
    sv = _sv([Part("kafka", p.start, p.check)], backoff_initial_s=0.2, backoff_max_s=1.0, budget=5)
    p.alive = False
    t0 = time.monotonic()
    sv.poll_once()  # down; the first try at once fails
    assert sv.states["kafka"].state == "down" and p.starts == 1
    _poll_until(sv, lambda: sv.states["kafka"].state == "up")
    assert p.starts == 3 and time.monotonic() - t0 >= 0.2 + 0.4 - 0.05  # waits 0.2 s, then 0.4 s


def test_a_part_added_later_is_supervised_and_reported():
    base, later, changes = Flaky(), Flaky(), []
    sv = _sv([Part("kafka", base.start, base.check)], on_change=changes.append)
    sv.add(Part("api", later.start, later.check))
    assert set(changes[-1]) == {"kafka", "api"}
    later.alive = False
    _poll_until(sv, lambda: later.alive)
    assert sv.states["api"].restarts == 1 and sv.states["kafka"].restarts == 0
