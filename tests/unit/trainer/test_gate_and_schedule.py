"""The registration gate's rule, alarm counting, and the local cron schedule."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.trainer.evaluate import _alarms, gate_decision
from services.trainer.schedule import run_schedule


def test_gate_needs_no_regression_and_one_improvement():
    act = {"auc": 0.80, "fa_per_hour": 10.0}
    assert gate_decision({"auc": 0.82, "fa_per_hour": 10.0}, act)[0]
    assert gate_decision({"auc": 0.80, "fa_per_hour": 4.0}, act)[0]
    assert not gate_decision({"auc": 0.80, "fa_per_hour": 10.0}, act)[0]  # equal is not better
    ok, why = gate_decision({"auc": 0.79, "fa_per_hour": 0.0}, act)
    assert not ok and "AUC" in why
    ok, why = gate_decision({"auc": 0.90, "fa_per_hour": 12.0}, act)
    assert not ok and "false alarms" in why
    assert gate_decision({"auc": 0.79, "fa_per_hour": 0.0}, act, auc_tolerance=0.02)[0]
    ok, why = gate_decision({"auc": None, "fa_per_hour": 1.0}, {"auc": None, "fa_per_hour": 2.0})
    assert ok and "AUC not compared" in why
    assert not gate_decision({"auc": None, "fa_per_hour": None}, {"auc": None, "fa_per_hour": None})[0]


def test_gate_refuses_a_version_that_misses_more_held_out_anomalies():
    act = {"auc": 0.80, "fa_per_hour": 5.0, "abnormal_segments": 14, "misses": 5, "missed_events": 1,
           "anomaly_events": 4}
    better_auc = {**act, "auc": 0.85}
    assert gate_decision(better_auc, act)[0]
    ok, why = gate_decision({**better_auc, "misses": 6}, act)  # higher AUC, one more segment missed
    assert not ok and "misses 6 > active 5 of 14" in why
    assert gate_decision({**better_auc, "misses": 6}, act, miss_tolerance=1)[0]
    ok, why = gate_decision({**better_auc, "missed_events": 2}, act)
    assert not ok and "missed events 2 > active 1" in why
    ok, why = gate_decision({**better_auc, "misses": 4}, act)
    assert ok and "misses 5 -> 4 of 14" in why
    # no held-out anomalies: misses are not compared
    assert gate_decision({"auc": None, "fa_per_hour": 1.0, "abnormal_segments": 0, "misses": 0},
                         {"auc": None, "fa_per_hour": 2.0, "abnormal_segments": 0, "misses": 0})[0]


def test_alarms_count_runs_not_segments():
    assert _alarms(np.array([0, 1, 1, 0, 1, 0, 0, 1])) == 3
    assert _alarms(np.array([0, 0])) == 0


def test_schedule_runs_at_cron_times_and_survives_a_failed_run():
    clock = [datetime(2026, 1, 1, 0, 0, 59, 950000, tzinfo=UTC)]
    ran: list[datetime] = []

    def job():
        ran.append(clock[0])
        clock[0] += timedelta(minutes=1)
        if len(ran) == 2:
            raise RuntimeError("boom")

    out: list[str] = []
    n = run_schedule("* * * * *", job, threading.Event(), max_runs=3, echo=out.append, now=lambda: clock[0])
    assert n == 3 and len(ran) == 3
    assert any("failed: boom" in line for line in out)
    assert out[0] == "next training run at 2026-01-01T00:01:00+00:00"


def test_schedule_rejects_a_bad_expression_and_stops_on_signal():
    with pytest.raises(ValueError, match="cron"):
        run_schedule("every day", lambda: None, threading.Event())
    stop = threading.Event()
    stop.set()
    assert run_schedule("0 3 * * *", lambda: None, stop) == 0


def test_cli_has_train_with_schedule():
    from typer.testing import CliRunner

    from services.cli import app

    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0 and "--schedule" in res.output and "--train-config" in res.output


def test_cli_train_prints_the_last_epoch_of_a_run_that_ends_between_polls(monkeypatch, tmp_path):
    """The progress follower polls the run's SQL row every 2 s; a run that ends sooner must
    still show its final epoch (it used to be lost, and a loaded CI machine hit it)."""
    from typer.testing import CliRunner

    import infra.embedded
    import services.trainer.run as run_mod
    from services.cli import app

    monkeypatch.setattr(infra.embedded, "apply_stack_endpoints", lambda s: s)
    monkeypatch.setattr(infra.embedded, "ray_init_client", lambda s: None)
    monkeypatch.setattr(run_mod, "read_progress",
                        lambda engine, rid: {"progress": {"epoch": 2, "epochs": 2, "loss": 0.25}})
    monkeypatch.setattr(run_mod, "run_training", lambda s, cfg, run_id, echo: run_mod.TrainOutcome(
        run_id=run_id, status="succeeded", parent=None, candidate="c1", registered=True, activated=False, reason="ok"))
    res = CliRunner().invoke(app, ["train", "--state-dir", str(tmp_path), "--run-id", "r1"])
    assert res.exit_code == 0, res.output
    assert "epoch 2/2  loss 0.2500" in res.output
