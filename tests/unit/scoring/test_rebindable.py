"""RebindableScoreFn: a call stuck on the old Serve handle gives up once the app is deployed again."""

from __future__ import annotations

import threading
import time

import pytest

from services.scoring.deploy import RebindableScoreFn


class _Response:
    def __init__(self, answer=None) -> None:  # noqa: ANN001
        self.answer = answer

    def result(self, timeout_s: float):  # noqa: ANN201
        if self.answer is None:  # the old app's replicas are gone: routing never resolves
            time.sleep(timeout_s)
            raise TimeoutError("Timed out resolving to ObjectRef.")
        return self.answer


class _Method:
    def __init__(self, answer) -> None:  # noqa: ANN001
        self.answer = answer

    def remote(self, *args):  # noqa: ANN002, ANN201
        return _Response(self.answer)


class _Handle:
    def __init__(self, answer=None) -> None:  # noqa: ANN001
        self.score_segment = _Method(answer)


def test_a_call_on_the_old_handle_gives_up_after_the_rebind_and_the_next_uses_the_new_app():
    fn = RebindableScoreFn(_Handle(None), timeout_s=60, poll_s=0.05)
    threading.Timer(0.3, lambda: fn.bind(_Handle({"score": 0.5}))).start()
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="deployed again"):
        fn(None, None, None)
    assert time.monotonic() - t0 < 2  # not the 60 s timeout
    assert fn(None, None, None) == {"score": 0.5}


def test_without_a_rebind_the_call_times_out_as_before():
    fn = RebindableScoreFn(_Handle(None), timeout_s=0.2, poll_s=0.05)
    with pytest.raises(TimeoutError):
        fn(None, None, None)
