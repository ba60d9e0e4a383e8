"""vigil-tiny's stage 2 data: detector crops of SynthCity captioned from the generator's truth."""

import numpy as np

from services.trainer.tiny_clip import camera_crops, crop_caption
from vigil.synthcity import ObjectCaption, PHRASES


def test_crop_caption_prefers_the_abnormal_agent_then_groups():
    walker = ObjectCaption(50, 50, "a person walks on the plaza", False)
    runner = ObjectCaption(55, 52, "someone sprints across the plaza", True)
    far = ObjectCaption(200, 200, "a person stands on the plaza", False)
    assert crop_caption((40, 40, 70, 70), [walker, far], "plaza") == ("a person walks on the plaza", False)
    assert crop_caption((40, 40, 70, 70), [walker, runner, far], "plaza") == ("someone sprints across the plaza", True)
    assert crop_caption((40, 40, 70, 70), [walker] * 4, "plaza") == ("several people walk on the plaza", False)
    assert crop_caption((0, 0, 10, 10), [walker, far], "plaza") == (None, False)


def test_camera_crops_hold_the_staged_event_with_its_phrase():
    crops, caps, abnormal = camera_crops("plaza", 3, 64, [("running", 8)], image_size=32)
    assert len(crops) == len(caps) == len(abnormal) > 0
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    run_phrases = {p.format(zone="plaza") for p in PHRASES["running"]}
    abnormal_caps = {c for c, a in zip(caps, abnormal) if a}
    assert abnormal_caps and abnormal_caps <= run_phrases  # the runner is found and named
    assert any(not a for a in abnormal)  # and the normal crowd too
