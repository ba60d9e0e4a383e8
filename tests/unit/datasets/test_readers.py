"""Dataset readers on tiny fixture trees written by the tests themselves."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from vigil.datasets import (
    DatasetLayoutError,
    read_avenue,
    read_shanghaitech,
    read_ucf_crime,
    read_ucsd,
    snippet_scores_to_frames,
)
from vigil.datasets.ucsd import intervals_to_labels

from .layouts import mat_cell, write_video


def _frames(folder: Path, n: int, ext: str = ".jpg", size=(24, 16)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((size[1], size[0], 3), (i * 20) % 255, np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}{ext}"), img)


def _video(path: Path, n: int, size=(32, 24), fps=25.0) -> None:
    write_video(path, np.stack([np.full((size[1], size[0], 3), (i * 30) % 255, np.uint8) for i in range(n)]), fps)


def test_ucsd_mat_labels_and_training(tmp_path):
    _frames(tmp_path / "training/frames/01", 5)
    _frames(tmp_path / "training/frames/02", 4)
    _frames(tmp_path / "testing/frames/01", 6)
    _frames(tmp_path / "testing/frames/02", 5)
    savemat(tmp_path / "ped2.mat", {"gt": mat_cell([np.array([[2], [3]]), np.array([[1, 5], [1, 5]])])})
    train = read_ucsd(tmp_path, "training")
    assert [c.name for c in train] == ["01", "02"] and all(c.labels is None for c in train)
    test = read_ucsd(tmp_path, "testing")
    assert test[0].labels.tolist() == [0, 1, 1, 0, 0, 0]  # 1-based inclusive [2, 3]
    assert test[1].labels.tolist() == [1, 0, 0, 0, 1]
    fr = test[0].frames()
    assert fr.shape == (6, 16, 24, 3) and fr.dtype == np.uint8


def test_ucsd_prefers_npz_and_checks_lengths(tmp_path):
    _frames(tmp_path / "testing/frames/01", 3)
    np.savez(tmp_path / "frame_labels_per_video.npz", **{"01": np.array([0, 0, 1])})
    assert read_ucsd(tmp_path, "testing")[0].labels.tolist() == [0, 0, 1]
    np.savez(tmp_path / "frame_labels_per_video.npz", **{"01": np.array([0, 1])})
    with pytest.raises(DatasetLayoutError, match="2 labels for 3 frames"):
        read_ucsd(tmp_path, "testing")


def test_ucsd_missing_labels_is_clear(tmp_path):
    _frames(tmp_path / "testing/frames/01", 3)
    with pytest.raises(DatasetLayoutError, match="ped\\*.mat"):
        read_ucsd(tmp_path, "testing")
    with pytest.raises(DatasetLayoutError):
        read_ucsd(tmp_path / "nope", "testing")


def test_intervals_to_labels():
    assert intervals_to_labels([(1, 2), (5, 9)], 6).tolist() == [1, 1, 0, 0, 1, 1]
    assert intervals_to_labels([(0, 1)], 3, one_based=False).tolist() == [1, 1, 0]


def test_avenue_masks(tmp_path):
    _video(tmp_path / "training_videos/01.avi", 4)
    _video(tmp_path / "testing_videos/01.avi", 5)
    masks = [np.zeros((24, 32), np.uint8) for _ in range(5)]
    masks[2][3, 4] = 1
    masks[3][:, :] = 1
    savemat(_mk(tmp_path / "testing_label_mask") / "1_label.mat", {"volLabel": mat_cell(masks)})
    test = read_avenue(tmp_path, "testing")
    assert test[0].labels.tolist() == [0, 0, 1, 1, 0]
    assert test[0].frames().shape[0] == 5
    train = read_avenue(tmp_path, "training")
    assert train[0].labels is None and len(train[0]) == 4


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_avenue_missing_label_file(tmp_path):
    _video(tmp_path / "testing_videos/01.avi", 3)
    _mk(tmp_path / "testing_label_mask")
    with pytest.raises(DatasetLayoutError, match="1_label.mat"):
        read_avenue(tmp_path, "testing")


def test_shanghaitech(tmp_path):
    _frames(tmp_path / "testing/frames/01_0014", 4)
    _mk(tmp_path / "testing/test_frame_mask")
    np.save(tmp_path / "testing/test_frame_mask/01_0014.npy", np.array([0, 1, 1, 0]))
    _video(tmp_path / "training/videos/01_001.avi", 6)
    test = read_shanghaitech(tmp_path, "testing")
    assert test[0].name == "01_0014" and test[0].labels.tolist() == [0, 1, 1, 0]
    train = read_shanghaitech(tmp_path, "training")
    assert train[0].name == "01_001" and train[0].frames().shape[0] == 6
    np.save(tmp_path / "testing/test_frame_mask/01_0014.npy", np.array([0, 1]))
    with pytest.raises(DatasetLayoutError, match="2 labels for 4 frames"):
        read_shanghaitech(tmp_path, "testing")


def test_ucf_crime(tmp_path):
    _video(tmp_path / "Arson/Arson011_x264.mp4", 20, fps=30.0)
    _video(tmp_path / "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4", 10, fps=30.0)
    (tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Arson011_x264.mp4  Arson  2  4  10  11\nNormal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
    )
    clips = {c.name: c for c in read_ucf_crime(tmp_path)}
    y = clips["Arson011_x264"].labels
    assert len(y) == 20 and np.flatnonzero(y).tolist() == [2, 3, 4, 10, 11]
    assert clips["Normal_Videos_003_x264"].labels.sum() == 0
    (tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text("Missing_x264.mp4 Arson 1 2 -1 -1\n")
    with pytest.raises(DatasetLayoutError, match="not found"):
        read_ucf_crime(tmp_path)


def test_snippet_scores_repeat_to_frames():
    out = snippet_scores_to_frames(np.array([0.1, 0.9]), 40, snippet=16)
    assert out.shape == (40,)
    assert np.all(out[:16] == 0.1) and np.all(out[16:] == 0.9)
    with pytest.raises(ValueError):
        snippet_scores_to_frames(np.array([]), 5)


def test_resample_keeps_the_frame_shown_at_each_tick_and_its_label(tmp_path):
    from vigil.datasets.base import Clip, resample_clip

    # 25 frames at 10 fps, each frame's grey level 10 x its index: the kept indices can be read back
    (tmp_path / "src").mkdir()
    for i in range(25):
        cv2.imwrite(str(tmp_path / "src" / f"{i:03d}.png"), np.full((16, 24, 3), 10 * i, np.uint8))
    labels = np.zeros(25, np.uint8)
    labels[10:15] = 1
    src = Clip(name="c", source=tmp_path / "src", labels=labels, fps=10.0,
               frame_paths=sorted((tmp_path / "src").iterdir()))
    out = resample_clip(src, 4.0, tmp_path / "out")
    kept = [int(f[0, 0, 0]) // 10 for f in out.iter_frames()]
    assert kept == [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]  # t = i / 4 s -> the frame shown then (10 fps)
    assert out.fps == 4.0 and len(out) == 10
    assert out.labels.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]


def test_resample_refuses_a_rate_the_footage_cannot_give(tmp_path):
    from vigil.datasets.base import Clip, resample_clip

    _frames(tmp_path / "src", 4)
    src = Clip(name="c", source=tmp_path / "src", fps=4.0, frame_paths=sorted((tmp_path / "src").iterdir()))
    with pytest.raises(ValueError, match="between 0 and the source's 4 fps"):
        resample_clip(src, 10.0, tmp_path / "out")
