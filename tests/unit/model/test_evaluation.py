"""Pooled frame-level AUC/AP and event-level precision/recall."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vigil.evaluation import (
    event_level_metrics,
    expand_segment_scores,
    frame_level_metrics,
    interval_iou,
    intervals_from_labels,
)


def test_pooled_not_averaged():
    # each video alone is perfectly ranked, but pooled the normal frames of video 2 outscore
    # the abnormal frames of video 1: pooling must see that
    scores = [[0.1, 0.2, 0.3, 0.4], [0.6, 0.7, 0.8, 0.9]]
    labels = [[0, 0, 1, 1], [0, 0, 1, 1]]
    m = frame_level_metrics(scores, labels)
    assert m.auc == pytest.approx(roc_auc_score([0, 0, 1, 1, 0, 0, 1, 1], np.concatenate(scores)))
    assert m.auc < 1.0 and m.n_frames == 8 and m.n_videos == 2 and m.n_abnormal == 4
    assert frame_level_metrics([[0.1, 0.9], [0.2]], [[0, 1], [0]]).auc == 1.0
    assert 0 < m.ap <= 1


def test_frame_metrics_errors():
    with pytest.raises(ValueError, match="both"):
        frame_level_metrics([[0.1, 0.2]], [[0, 0]])
    with pytest.raises(ValueError):
        frame_level_metrics([[0.1]], [[0, 1]])
    with pytest.raises(ValueError, match="NaN"):
        frame_level_metrics([[np.nan, 0.2]], [[0, 1]])


def test_intervals_and_expansion():
    assert intervals_from_labels([0, 1, 1, 0, 0, 1]) == [(1, 3), (5, 6)]
    assert intervals_from_labels([0, 0]) == []
    assert interval_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert expand_segment_scores([0.1, 0.9], 3).tolist() == [0.1] * 3 + [0.9] * 3
    assert expand_segment_scores([0.1, 0.9], 3, n_frames=8).tolist() == [0.1] * 3 + [0.9] * 5


def test_event_level_precision_recall():
    gt = {"a": [(10, 20), (50, 60)], "b": [(0, 5)], "c": []}
    pred = {"a": [(15, 25), (30, 40)], "b": [(1, 2), (3, 4)], "c": [(0, 1)]}
    m = event_level_metrics(pred, gt)
    assert (m.true_positives, m.predicted, m.ground_truth, m.detected) == (3, 5, 3, 2)
    assert m.precision == pytest.approx(3 / 5) and m.recall == pytest.approx(2 / 3)
    strict = event_level_metrics(pred, gt, min_iou=0.5)
    assert strict.true_positives == 0 and strict.recall == 0
    assert event_level_metrics({}, {}).f1 == 0.0
