"""The idempotent SQL sink of the scoring path.

One transaction per scored segment writes the score row, the events it opened, extended
or ended with their lifecycle messages (the outbox, published by :mod:`services.scoring.relay`),
and the camera's new state (event tracker + model context). A re-delivered segment finds its
row and is skipped, so at-least-once delivery yields exactly-once rows and messages, and state
never runs ahead of or behind the rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from vigil.clock import utcnow
from vigil.config import CameraParams
from vigil.contracts import DeadLetter, EventMessage, SegmentRef
from vigil.events import EventTracker, Transition, severity
from vigil.models import CameraState, DeadLetterRow, Event, EventOutbox, SegmentScore


def zone_key(key: str, zone: str) -> str:
    """A zone's own segment row id or scoring-state id: ``<camera's>~<zone>`` (``~`` is in no
    camera or segment id, and needs no escaping in a URL)."""
    return f"{key}~{zone}"


class Sink:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def is_scored(self, segment_id: str) -> bool:
        with Session(self.engine) as s:
            return s.get(SegmentScore, segment_id) is not None

    def record_dead_letter(self, dl: DeadLetter) -> None:
        """Keep a dead letter in SQL for the API's list and replay; the same record given up
        twice (the topic took it, then the worker died) is kept once."""
        with Session(self.engine) as s:
            s.add(DeadLetterRow(source_topic=dl.source_topic, partition=dl.partition, offset=dl.offset, key=dl.key,
                                reason=dl.reason, attempts=dl.attempts, payload_b64=dl.payload_b64, at=dl.at))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()

    def load_camera_state(self, camera_id: str) -> CameraState | None:
        with Session(self.engine) as s:
            row = s.get(CameraState, camera_id)
            if row is not None:
                s.expunge(row)
            return row

    def commit(
        self,
        ref: SegmentRef,
        result: dict[str, Any],
        tracker: EventTracker,
        transitions: list[Transition],
        params: CameraParams,
        zone: str | None = None,
        *,
        rescore: bool = False,
    ) -> bool:
        """Write everything for one segment atomically (of one zone of its camera, with ``zone``:
        its row and state are keyed :func:`zone_key`, as the tracker keys its events). False if
        it was already stored. With ``rescore`` (``vigil rescore``) a stored row is overwritten
        with the new result and model version, and the live camera state is left alone."""
        now = utcnow()
        row_id, state_id = (ref.segment_id, ref.camera_id) if zone is None else (
            zone_key(ref.segment_id, zone), zone_key(ref.camera_id, zone))
        with Session(self.engine) as s:
            stored = s.get(SegmentScore, row_id)
            if stored is not None and not rescore:
                return False
            fresh = SegmentScore(
                segment_id=row_id, camera_id=ref.camera_id, zone=zone, seq=ref.seq,
                t_start=ref.t_start, t_end=ref.t_end, score=result["score"], s_sem=result.get("s_sem"),
                s_pred=result.get("s_pred"), s_obj=result.get("s_obj"), gate=result.get("gate"),
                streams=result.get("streams"),
                frame_scores=result.get("frame_scores", []), top_descriptions=result.get("top_descriptions", []),
                model_version=result["model_version"], prompt_set=result.get("prompt_set"),
                object_key=ref.object_key, scored_at=now,
            )
            if stored is None:
                s.add(fresh)
            else:
                for k in SegmentScore.model_fields:
                    setattr(stored, k, getattr(fresh, k))
                s.add(stored)
            for tr in transitions:
                ev = tr.event
                row = s.get(Event, ev.id)
                # the peak moved to this segment (or the event starts here): every stream at the peak
                peak_here = row is None or ev.peak_score != row.peak_score
                if row is None:
                    row = Event(id=ev.id, camera_id=ref.camera_id, zone=zone, created_at=now,
                                model_version=result["model_version"],
                                peak_score=ev.peak_score, first_seq=ev.first_seq, last_seq=ev.last_seq,
                                t_start=datetime.fromisoformat(ev.t_start), t_end=datetime.fromisoformat(ev.t_end))
                row.t_end = datetime.fromisoformat(ev.t_end)
                row.last_seq = ev.last_seq
                row.peak_score = ev.peak_score
                if peak_here:
                    row.peak_s_sem, row.peak_s_pred = result.get("s_sem"), result.get("s_pred")
                    row.peak_s_obj, row.peak_streams = result.get("s_obj"), result.get("streams")
                    row.prompt_set = result.get("prompt_set")
                if rescore:  # the same id (its first segment) re-found: it takes the new model's view
                    row.t_start, row.first_seq = datetime.fromisoformat(ev.t_start), ev.first_seq
                    row.model_version = result["model_version"]
                row.top_descriptions = list(ev.top_descriptions)
                row.segment_ids = list(ev.segment_ids)
                row.severity = severity(ev.peak_score, tracker.threshold)  # the learnt one when calibrated
                row.status = "closed" if tr.kind == "end" else "open"
                row.updated_at = now
                row.version = (row.version or 0) + 1
                s.add(row)
                # its lifecycle message, in this transaction: the relay publishes it (the outbox)
                msg = EventMessage(
                    event_id=ev.id, kind=tr.kind, camera_id=ref.camera_id, zone=zone, version=row.version,
                    t_start=datetime.fromisoformat(ev.t_start), t_end=datetime.fromisoformat(ev.t_end),
                    peak_score=ev.peak_score, top_descriptions=ev.top_descriptions, segment_ids=ev.segment_ids,
                    model_version=result["model_version"], severity=row.severity,
                )
                s.add(EventOutbox(event_id=ev.id, version=row.version, kind=tr.kind, payload=msg.model_dump(mode="json"),
                                  created_at=now))
            if rescore:
                s.commit()
                return True
            state = s.get(CameraState, state_id)
            if state is None:
                state = CameraState(camera_id=state_id, last_seq=ref.seq)
            state.last_seq = ref.seq
            state.tracker = tracker.to_dict()
            state.model_state = result.get("state") or {}
            state.updated_at = now
            s.add(state)
            s.commit()
        return True

    def end_events(self, event_ids: list[str], *, superseded: bool = False) -> None:
        """End events outside a segment's commit (``vigil rescore``): the one still open where
        the re-scored range ends, or with ``superseded`` those re-scoring no longer finds
        (status superseded: kept, never deleted). Each gets its next version and outbox message."""
        now = utcnow()
        with Session(self.engine) as s:
            for eid in event_ids:
                row = s.get(Event, eid)
                if row is None:
                    continue
                row.status = "superseded" if superseded else "closed"
                row.version = (row.version or 0) + 1
                row.updated_at = now
                s.add(row)
                msg = EventMessage(
                    event_id=row.id, kind="end", camera_id=row.camera_id, zone=row.zone, version=row.version,
                    t_start=row.t_start, t_end=row.t_end, peak_score=row.peak_score,
                    top_descriptions=row.top_descriptions, segment_ids=row.segment_ids,
                    model_version=row.model_version, severity=row.severity, superseded=superseded,
                )
                s.add(EventOutbox(event_id=row.id, version=row.version, kind="end", payload=msg.model_dump(mode="json"),
                                  created_at=now))
            s.commit()
