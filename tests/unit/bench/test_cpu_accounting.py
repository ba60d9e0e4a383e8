"""The bench's record of where the cores went keeps the CPU of threads that have ended
(the cameras stop once their footage is streamed, before the closing snapshot)."""

from __future__ import annotations

import threading
import time

import psutil

from services.bench.run import _cpu_delta, _cpu_snapshot, _short


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        x += 1


def test_cpu_of_a_thread_that_ended_between_snapshots_is_kept():
    before = _cpu_snapshot()
    th = threading.Thread(target=_burn, args=(0.3,), name="camera-cam00")
    th.start()
    th.join()
    # join() returns once Python is done with the thread; the OS thread exits a moment later
    deadline = time.monotonic() + 5
    while th.native_id in {t.id for t in psutil.Process().threads()} and time.monotonic() < deadline:
        time.sleep(0.01)
    after = _cpu_snapshot()
    ended = after["vigil/ended threads"] - before.get("vigil/ended threads", 0.0)
    assert 0.25 <= ended <= 0.6, ended  # the 0.3 s it burnt, not lost with the thread
    cores = _cpu_delta(before, after, 1.0)
    assert cores.get("vigil/ended threads", 0.0) >= 0.25
    assert "vigil/camera-cam" not in cores  # it is gone from the thread list


class _Proc:
    def __init__(self, title: str) -> None:
        self.title = title

    def name(self) -> str:
        return self.title


def test_a_ray_actor_keeps_one_label_whatever_method_it_is_running():
    idle = _short(_Proc("ray::ServeReplica:vigil-scoring:Ingress"), "")
    busy = _short(_Proc("ray::ServeReplica:vigil-scoring:Ingress.handle_request_with_rejection"), "")
    assert idle == busy == "ray::ServeReplica:vigil-scoring:Ingress"
    assert _short(_Proc("ray::ServeController.listen_for_change"), "") == "ray::ServeController"
