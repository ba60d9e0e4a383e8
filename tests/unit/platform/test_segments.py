from __future__ import annotations

import numpy as np
import pytest

from vigil.segments import SegmentDecodeError, decode_segment, encode_segment


def test_round_trip_keeps_shape_and_content():
    rng = np.random.default_rng(0)
    frames = np.zeros((5, 48, 64, 3), np.uint8)
    for i in range(5):
        frames[i, 10:30, 5 + i * 8 : 20 + i * 8] = rng.integers(100, 255, 3)
    blob = encode_segment(frames, quality=95, meta={"camera": "c"})
    seg = decode_segment(blob)
    assert seg.frames.shape == frames.shape and seg.meta == {"camera": "c"}
    assert np.abs(seg.frames.astype(int) - frames.astype(int)).mean() < 3  # JPEG, but close
    assert len(blob) < frames.nbytes  # compact


@pytest.mark.parametrize("blob", [b"", b"PK\x03\x04broken", b"hello world"])
def test_garbage_is_a_decode_error(blob):
    with pytest.raises(SegmentDecodeError):
        decode_segment(blob)


def test_truncated_object_is_a_decode_error():
    blob = encode_segment(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(SegmentDecodeError):
        decode_segment(blob[: len(blob) // 2])


def test_empty_segment_is_refused():
    with pytest.raises(ValueError):
        encode_segment([])
