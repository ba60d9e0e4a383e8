"""`vigil eval avenue|shanghaitech`: the UCSD protocol on the other one-class layouts, end to end
on tiny trees written here (training from video files, test clips read segment by segment)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat
from typer.testing import CliRunner

from .layouts import mat_cell, write_video

W, H, FPS = 160, 120, 10.0
TINY = {"tube": {"size": 64, "context": 2, "horizon": 2}, "hidden": 32, "memory_size": 500}


def _footage(n: int, seed: int, fast_from: int | None = None) -> np.ndarray:
    """Two walkers at 2 px/frame on a textured street; from ``fast_from`` one moves at 9 px/frame."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(70, 130, (H, W), dtype=np.uint8), (5, 5), 0)
    frames = np.repeat(base[None], n, 0).copy()
    x = [10.0, 140.0]
    for i in range(n):
        x[0] = (x[0] + (9 if fast_from is not None and i >= fast_from else 2)) % (W - 12)
        x[1] = (x[1] - 2) % (W - 12)
        for k, y in enumerate((30, 70)):
            frames[i, y : y + 20, int(x[k]) : int(x[k]) + 9] = 215
    return np.repeat(frames[..., None], 3, -1)


def _labels(n: int, fast_from: int) -> np.ndarray:
    return (np.arange(n) >= fast_from).astype(np.uint8)


def _avenue(root: Path) -> None:
    for i in range(4):
        write_video(root / f"training_videos/{i + 1:02d}.avi", _footage(60, seed=i), FPS)
    (root / "testing_label_mask").mkdir(parents=True)
    for i, start in enumerate((30, 25)):
        write_video(root / f"testing_videos/{i + 1:02d}.avi", _footage(60, seed=10 + i, fast_from=start), FPS)
        masks = [np.full((H, W), y, np.uint8) for y in _labels(60, start)]
        savemat(root / f"testing_label_mask/{i + 1}_label.mat", {"volLabel": mat_cell(masks)})


def _shanghaitech(root: Path) -> None:
    for i in range(4):
        write_video(root / f"training/videos/01_{i + 1:03d}.avi", _footage(60, seed=i), FPS)
    (root / "testing/test_frame_mask").mkdir(parents=True)
    for i, start in enumerate((30, 25)):
        name = f"01_{i + 1:04d}"
        folder = root / "testing/frames" / name
        folder.mkdir(parents=True)
        for t, f in enumerate(_footage(60, seed=10 + i, fast_from=start)):
            cv2.imwrite(str(folder / f"{t:03d}.jpg"), f)
        np.save(root / f"testing/test_frame_mask/{name}.npy", _labels(60, start))


@pytest.mark.parametrize("dataset,make", [("avenue", _avenue), ("shanghaitech", _shanghaitech)])
def test_eval_trains_on_normal_videos_and_finds_the_fast_walker(tmp_path, dataset, make):
    from services.eval.ucsd import run_dataset_eval

    make(tmp_path / "data")
    out = run_dataset_eval(tmp_path / "data", tmp_path / "out.json", dataset=dataset, steps=10, config=TINY,
                           fps=FPS, progress=False)
    names = {"01", "02"} if dataset == "avenue" else {"01_0001", "01_0002"}
    assert out["frames"] == 120 and set(out["per_clip"]) == names
    meta = out["checkpoint_meta"]
    stems = ["01", "02", "03", "04"] if dataset == "avenue" else ["01_001", "01_002", "01_003", "01_004"]
    assert sorted(meta["train_clips"] + meta["calibration_clips"]) == stems  # trained on the normal videos
    assert out["auc"] > 0.8, out["auc"]  # a 4.5x faster walker is an anomaly the speed stream cannot miss
    assert json.loads((tmp_path / "out.json").read_text())["auc"] == pytest.approx(out["auc"])


def test_eval_cli_names_the_missing_layout(tmp_path):
    from services.cli import app
    from services.eval.ucsd import run_dataset_eval

    res = CliRunner().invoke(app, ["eval", "avenue", "--root", str(tmp_path)])
    assert res.exit_code != 0 and "testing_videos" in res.output
    with pytest.raises(ValueError, match="unknown dataset 'ped3'"):
        run_dataset_eval(tmp_path, dataset="ped3")


def test_eval_learns_from_only_the_first_minutes_of_normal_footage(tmp_path):
    """A live camera's normal period: --train-minutes keeps the first N minutes, in clip order, cutting the last clip."""
    from services.eval.ucsd import run_dataset_eval

    _avenue(tmp_path / "data")
    # 4 normal videos of 60 frames at 10 fps; 0.15 min = 90 frames: the first video and half the second
    out = run_dataset_eval(tmp_path / "data", dataset="avenue", steps=10, config=TINY, fps=FPS, progress=False,
                           train_minutes=0.15)
    meta = out["checkpoint_meta"]
    assert out["train_frames"] == meta["train_frames"] == 90 and out["train_minutes"] == 0.15
    assert sorted(meta["train_clips"] + meta["calibration_clips"]) == ["01", "02"]
    assert out["frames"] == 120 and np.isfinite(out["auc"])


def test_eval_at_the_live_frame_rate_resamples_normal_and_test_footage(tmp_path):
    """--at-fps 4: footage recorded at 10 fps is trained and scored as a 4 fps camera would see it."""
    from services.cli import app
    from services.eval.ucsd import run_dataset_eval

    _avenue(tmp_path / "data")
    out = run_dataset_eval(tmp_path / "data", dataset="avenue", steps=10, config=TINY, fps=FPS, progress=False,
                           at_fps=4.0, work_dir=tmp_path / "w")
    assert out["fps"] == 4.0 and out["source_fps"] == FPS
    assert out["frames"] == 2 * 24  # 60 frames at 10 fps = 6 s = 24 frames at 4 fps, per test clip
    assert out["checkpoint_meta"]["train_frames"] == 4 * 24  # the normal videos were resampled too
    assert out["per_clip"]["01"]["abnormal"] == 12  # frames 30.. at 10 fps -> ticks 12.. at 4 fps
    # the CLI reads the footage at Avenue's own 25 fps: it cannot be resampled up to 30
    res = CliRunner().invoke(app, ["eval", "avenue", "--root", str(tmp_path / "data"), "--at-fps", "30"])
    assert res.exit_code != 0 and "between 0 and the source's 25 fps" in res.output
