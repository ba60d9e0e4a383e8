"""A load the cameras cannot offer fails at once, naming the way out, not deep in the config."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import services.bench.run as bench
from services.cli import app


def test_load_above_the_camera_fps_limit_names_the_cameras_needed(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "parallel_bare_fps", lambda *a, **k: {"fps": 404.0, "segment_s": 0.02})

    def render(n, *a, **k):  # the one probe camera only: the ten must not be rendered
        if n != 1:
            pytest.fail("cameras rendered for a load they cannot offer")
        return [tmp_path]

    monkeypatch.setattr(bench, "render_cameras", render)
    monkeypatch.setattr(bench, "_sample_segments", lambda *a, **k: [])
    with pytest.raises(bench.BenchLoadError, match=r"60.6 fps per camera.*--cameras 11 or more"):
        bench.run_bench(10, 5, "vigil-tiny", None, load=1.5, frames_per_segment=8, state_dir=tmp_path,
                        echo=lambda *_: None)


def test_cli_reports_it_as_an_error_with_exit_code_2(monkeypatch, tmp_path):
    def refuse(*a, **k):
        raise bench.BenchLoadError("--load 1.5 ... use --cameras 11 or more")

    monkeypatch.setattr("services.bench.run_bench", refuse)  # the name the CLI imports
    res = CliRunner().invoke(app, ["bench", "--cameras", "10", "--load", "1.5", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2 and "use --cameras 11 or more" in res.output
