from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.contracts import ContractError, DeadLetter, EventMessage, SegmentRef, decode


def _ref(**kw):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = dict(segment_id="c.1.000001", camera_id="c", seq=1, t_start=now, t_end=now, fps=4.0, n_frames=16,
                width=320, height=240, object_key="segments/c/1/000001.npz")
    return SegmentRef(**{**base, **kw})


def test_round_trip():
    ref = _ref()
    assert decode(SegmentRef, ref.encode()) == ref


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"schema_version": 2}', "schema_version 2"),
        (b'{"segment_id": "x"}', "schema_version None"),
        (b'{"schema_version": 1, "segment_id": "x"}', "invalid SegmentRef"),
        (None, "tombstone"),
    ],
)
def test_undecodable_messages_raise_contract_error_with_reason(raw, why):
    with pytest.raises(ContractError, match=why):
        decode(SegmentRef, raw)


def test_extra_fields_are_refused():
    data = _ref().model_dump(mode="json") | {"pixels": [1, 2, 3]}
    import json

    with pytest.raises(ContractError, match="pixels"):
        decode(SegmentRef, json.dumps(data).encode())


def test_dead_letter_keeps_original_bytes():
    dl = DeadLetter.wrap(b"\x00garbage", "bad", source_topic="t", partition=0, offset=5, key="k")
    back = decode(DeadLetter, dl.encode())
    assert back.payload == b"\x00garbage" and back.reason == "bad" and back.offset == 5


def test_event_message_kind_is_checked():
    now = datetime.now(UTC)
    EventMessage(event_id="e", kind="new", camera_id="c", t_start=now, t_end=now, peak_score=0.9, model_version="m")
    with pytest.raises(ValueError):
        EventMessage(event_id="e", kind="started", camera_id="c", t_start=now, t_end=now, peak_score=0.9,
                     model_version="m")


def test_event_message_carries_the_stream_behind_each_reason_to_notifications():
    from services.notify.channels import notification_body

    now = datetime(2026, 1, 1, tzinfo=UTC)
    reason = {"text": "moving 3.1× faster than objects usually move here", "prob": 0.93, "abnormal": True,
              "stream": "place_speed"}
    old = {"text": "fighting between people", "prob": 0.7, "abnormal": True}  # written before reasons had a stream
    msg = EventMessage(event_id="ev:c.1.1", kind="new", camera_id="c", version=1, t_start=now, t_end=now,
                       peak_score=0.9, top_descriptions=[reason, old], model_version="m")
    assert decode(EventMessage, msg.encode()) == msg
    import json

    body = json.loads(notification_body(msg, key="k", evidence_url=None))
    assert body["top_descriptions"][0] == reason and body["top_descriptions"][1]["stream"] is None
