"""RebindableScoreFn: a call stuck on the old Serve handle gives up once the app is deployed again."""

from __future__ import annotations

import threading
import time

import pytest

from services.scoring.deploy import RebindableScoreFn


class _Response:
    def __init__(self, answer=None) -> None:  # noqa: ANN001
        self.answer = answer
        self.cancelled = False

    def result(self, timeout_s: float):  # noqa: ANN201
        if isinstance(self.answer, Exception):  # e.g. Ray shut down under the call
            raise self.answer
        if self.answer is None:  # the old app's replicas are gone: routing never resolves
            time.sleep(timeout_s)
            raise TimeoutError("Timed out resolving to ObjectRef.")
        return self.answer

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, answer) -> None:  # noqa: ANN001
        self.answer = answer

        self.responses: list[_Response] = []

    def remote(self, *args):  # noqa: ANN002, ANN201
        self.responses.append(_Response(self.answer))
        return self.responses[-1]


class _Handle:
    """The app's handle and its stages at once (what ServedStages submits through)."""

    def __init__(self, answer=None) -> None:  # noqa: ANN001
        self.score_segment = _Method(answer)

    def submit(self, *args):  # noqa: ANN002, ANN201
        return self.score_segment.remote(*args)


def _fn(handle: _Handle, **kw) -> RebindableScoreFn:  # noqa: ANN003
    return RebindableScoreFn(handle, stages=lambda h: h, **kw)


def test_a_call_on_the_old_handle_gives_up_after_the_rebind_and_the_next_uses_the_new_app():
    fn = _fn(_Handle(None), timeout_s=60, poll_s=0.05)
    threading.Timer(0.3, lambda: fn.bind(_Handle({"score": 0.5}))).start()
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="deployed again"):
        fn(None, None, None)
    assert time.monotonic() - t0 < 2  # not the 60 s timeout
    assert fn(None, None, None) == {"score": 0.5}


def test_a_failed_or_abandoned_call_is_cancelled_in_the_router_and_an_answered_one_is_not():
    old = _Handle(None)
    fn = _fn(old, timeout_s=60, poll_s=0.05)
    threading.Timer(0.2, lambda: fn.bind(_Handle(AttributeError("'Worker' object has no attribute 'core_worker'")))).start()
    with pytest.raises(ConnectionError):
        fn(None, None, None)
    with pytest.raises(AttributeError):
        fn(None, None, None)
    assert old.score_segment.responses[0].cancelled  # left routing, it would retry against the dead cluster
    assert fn.handle.score_segment.responses[0].cancelled
    ok = _Handle({"score": 1.0})
    fn.bind(ok)
    fn(None, None, None)
    assert not ok.score_segment.responses[0].cancelled


def test_while_unbound_calls_wait_for_the_new_app_instead_of_reaching_the_old_one():
    old = _Handle({"score": 0.1})
    fn = _fn(old, timeout_s=5, poll_s=0.05)
    fn.unbind()
    new = _Handle({"score": 0.9})
    threading.Timer(0.3, lambda: fn.bind(new)).start()
    t0 = time.monotonic()
    assert fn(None, None, None) == {"score": 0.9}
    assert 0.25 < time.monotonic() - t0 < 3
    assert old.score_segment.responses == []


def test_unbound_for_longer_than_the_timeout_raises_connection_error_naming_it():
    fn = _fn(_Handle({"score": 0.1}), timeout_s=0.2)
    fn.unbind()
    with pytest.raises(ConnectionError, match="no scoring app for 0 s"):
        fn(None, None, None)


def test_without_a_rebind_the_call_times_out_as_before():
    fn = _fn(_Handle(None), timeout_s=0.2, poll_s=0.05)
    with pytest.raises(TimeoutError):
        fn(None, None, None)
