"""`vigil demo` end to end: segments and events, visible through the API while it runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def test_demo_reports_segments_and_events_visible_through_api(tmp_path):
    cfg = tmp_path / "demo.yaml"
    # threshold 0 in fixed mode: every segment is above it, so events are certain within a short run
    cfg.write_text("camera_defaults: {threshold_mode: fixed, threshold: 0.0}\nmodel: {backbone: vigil-micro}\n"
                   "api: {port: 0}\ndashboard: {port: 0}\n")
    out = tmp_path / "summary.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "demo", "--config", str(cfg), "--state-dir", str(tmp_path / "st"),
         "--minutes", "1", "--cameras", "2", "--json", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    api_url = dash_url = None
    api_events: list = []
    listed_at_start: list = []
    dash_ok = False
    lines: list[str] = []
    deadline = time.monotonic() + 420
    try:
        for line in proc.stdout:
            lines.append(line)
            if m := re.match(r"API\s+(http://127\.0\.0\.1:\d+)", line):
                api_url = m.group(1)
                # the cameras are listed as soon as the API answers, before the model is deployed
                r = httpx.get(f"{api_url}/cameras", headers={"X-API-Key": "vigil-dev-admin-key"}, timeout=10)
                listed_at_start = [c["id"] for c in r.json()]
            if m := re.match(r"dashboard\s+(http://127\.0\.0\.1:\d+)", line):
                dash_url = m.group(1)
            if line.startswith("[") and "segments scored" in line and api_url and not api_events:
                r = httpx.get(f"{api_url}/events", headers={"X-API-Key": "vigil-dev-admin-key"}, timeout=10)
                assert r.status_code == 200, r.text
                api_events = r.json()["items"]
                if dash_url and not dash_ok:  # Streamlit may take a few seconds more than the API
                    try:
                        dash_ok = httpx.get(f"{dash_url}/_stcore/health", timeout=10).status_code == 200
                    except httpx.ConnectError:
                        pass
            assert time.monotonic() < deadline, "demo ran too long:\n" + "".join(lines[-30:])
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines[-40:])
    assert proc.returncode == 0, log
    summary = json.loads(out.read_text())
    assert summary["cameras"] == 2 and summary["segments"] >= 10 and summary["events"] >= 1, summary
    assert set(summary) == {"segments", "events", "cameras", "seconds", "first_segment_s", "first_event_s",
                            "restarts", "recovery_s", "reannounced", "captured_segments", "dropped_segments", "failed"}
    # nothing died in this run, and every captured segment was scored
    assert summary["restarts"] == {} and summary["failed"] is None and summary["reannounced"] == 0
    assert summary["segments"] == summary["captured_segments"] > 0, summary
    assert 0 < summary["first_segment_s"] <= summary["first_event_s"] < summary["seconds"], summary
    assert listed_at_start == ["cam-01", "cam-02"], listed_at_start
    assert api_events, "no event visible through the API while the demo ran:\n" + log
    assert dash_ok, "the dashboard never answered its health check:\n" + log
    assert {e["camera_id"] for e in api_events} <= {"cam-01", "cam-02"}
