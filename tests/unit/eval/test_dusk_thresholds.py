"""The dusk record's event accounting (services.eval.dusk.threshold_runs) on scores made here."""

import numpy as np

from services.eval.dusk import threshold_runs


def _drifting_scores(seed: int = 0) -> tuple[list[float], list[int]]:
    """30 segments of the footage the camera's version was trained on (scored near 0), then a
    normal level that drifts up from 0.2 to 0.35 over 30 minutes (night falling, as on the
    SynthCity plaza), and one anomaly at 0.97."""
    rng = np.random.default_rng(seed)
    n, first = 600, 30
    level = np.concatenate([np.zeros(first), np.full(120, 0.2), np.linspace(0.2, 0.35, n - first - 120)])
    s = np.clip(level + rng.normal(0, 0.03, n), 0, 1)
    s[:first] = 0.01
    y = np.zeros(n, int)
    s[580:583], y[580:583] = 0.97, 1
    return [float(x) for x in s], [int(v) for v in y]


def test_the_adapting_threshold_follows_the_drift_and_still_opens_the_anomaly():
    s, y = _drifting_scores()
    runs = threshold_runs(s, [[] for _ in s], y, first=30, fps=4.0, segment_frames=16)
    adapting, frozen = runs["adapting"], runs["frozen"]
    assert frozen["false_alarm_segments"] > 3 * max(1, adapting["false_alarm_segments"])
    assert adapting["threshold_end"] > adapting["threshold_start"] + 0.08  # it rose with the normal level
    assert adapting["anomalies_opened"] == frozen["anomalies_opened"] == adapting["anomalies"] == 1
    # adapting, the anomaly is an event of its own; frozen, it is swallowed by a drift "event" that never ended
    (a0, a1), = [e for e in adapting["events"] if e[0] <= 582 and e[1] >= 580]
    (f0, f1), = [e for e in frozen["events"] if e[0] <= 582 and e[1] >= 580]
    assert a1 - a0 <= 4 and f1 - f0 > 50


def test_the_version_is_calibrated_after_its_training_footage_never_on_it():
    s, y = _drifting_scores()
    runs = threshold_runs(s, [[] for _ in s], y, first=30, fps=4.0, segment_frames=16)
    # learnt on the training footage (scored 0.01) the threshold would sit near the floor
    assert runs["frozen"]["threshold_start"] > 0.2
    assert all(a >= 30 for a, _ in runs["adapting"]["events"] + runs["frozen"]["events"])
