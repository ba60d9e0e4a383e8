"""Per-camera event logic: smoothing, hysteresis, minimum duration → new / update / end.

A pure, deterministic function of the camera's score sequence: its whole state is a small
dict (:meth:`EventTracker.to_dict`) that the sink stores in the same transaction as the
score rows, so a crash or rebalance resumes exactly where the camera was and a replayed
run yields identical events.

Rules (per segment, in seq order):
- smoothed = EMA(score, alpha) (alpha = 1 disables smoothing);
- calibrated mode: the first ``calibration_skip_segments`` are ignored (the model is still
  calibrating its predictive stream on them), the next ``calibration_segments`` are taken
  as the camera's normal period and raise no event; then
  threshold = max(calibration_floor, quantile_q(normal smoothed scores) + margin), capped
  at 0.99 (scores of different cameras and models live on different scales),
  release = max(0.8 × threshold, halfway between the normal level (median) and the threshold),
  so an event ends when the scores return to the camera's normal level even where that level
  sits close to the threshold (a camera whose normality scores rise in the dark: a release of
  0.8 × threshold under the normal level would keep an event open for ever, and a threshold
  that never adapts during it). Then the threshold keeps adapting to normal drift: every segment
  scored while no event is open joins a window of the last ``adapt_window`` such scores, and
  the threshold moves towards the window's quantile + margin by at most ``adapt_step``; the
  segments of an event never enter the window, so an anomaly is not absorbed. By default it
  only rises above the calibrated threshold, never falls below it (``threshold_adapt_down``):
  on the SynthCity dusk the zero-shot scores fall in the dark and a falling threshold let the
  dark's noise through (24 false alarms against 13; benchmarks/synthcity_dusk.json). When the model
  that scores the camera changes (its own normality version arrives: the scores' scale
  changes), the threshold is learnt again from the new model's first ``calibration_segments``
  (no skip; an event already open is closed first, and none opens while relearning). Fixed
  mode uses the configured thresholds from the start;
- an event opens after ``min_event_segments`` consecutive smoothed scores ≥ ``threshold``;
  it starts at the first of them (the pending segments belong to it);
- an open event is extended by every segment; it ends after ``end_after_segments``
  consecutive smoothed scores < ``release`` (hysteresis: release ≤ threshold); the
  trailing quiet segments are not part of it;
- calibrated mode: an event open for ``event_relearn_after_s`` is the scene that changed, not
  an incident (the threshold stands still during an event, so a drift faster than it adapts
  would keep the event open for ever and merge every later anomaly into it): it ends at that
  segment and the threshold is learnt again from the next ``calibration_segments``, keeping
  the floor learnt before, so it can follow the scene back down (dusk, then dawn);
- the stream breaks where the camera's sequence restarts (a new ingest run) or its next segment
  starts more than ``event_gap_s`` after the last one ended: an open event ends at its last
  segment, a pending run and the smoothing start afresh, so an incident after a restart or an
  outage is an event of its own, never the continuation of one from before;
- the event id is named by the segment it opened at (:func:`event_id`): deterministic, so a
  replay upserts the same row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from vigil.config import CameraParams


@dataclass
class TrackedEvent:
    id: str
    camera_id: str
    first_seq: int
    last_seq: int
    t_start: str  # ISO 8601; strings keep the state JSON-serialisable
    t_end: str
    peak_score: float
    top_descriptions: list[dict[str, Any]]
    segment_ids: list[str]


@dataclass
class Transition:
    kind: Literal["new", "update", "end"]
    event: TrackedEvent


def event_id(first_segment_id: str) -> str:
    """An event is named by the segment it opened at: ingest's segment ids carry the camera and
    its run's epoch, so ids never repeat across ingest restarts or replicas, and re-scoring the
    same segments gives the same id (the rows are overwritten, not duplicated)."""
    eid = f"ev:{first_segment_id}"
    if len(eid) > 200:  # the column's width: keep a readable head and a digest of the whole
        import hashlib

        eid = f"{eid[:180]}~{hashlib.sha256(eid.encode()).hexdigest()[:16]}"
    return eid


@dataclass
class _Seg:
    segment_id: str
    seq: int
    t_start: str
    t_end: str
    score: float
    top: list[dict[str, Any]]


@dataclass
class EventTracker:
    camera_id: str
    threshold: float
    release: float
    min_event_segments: int = 1
    end_after_segments: int = 1
    alpha: float = 1.0
    # calibration (mode "calibrated"): skip, then learn from a normal period
    calibrated: bool = True
    skip: int = 0
    calib_n: int = 0
    calib_q: float = 0.95
    calib_margin: float = 0.05
    calib_floor: float = 0.05
    adapt_window: int = 0  # calibrated mode: recent scores outside events the threshold follows
    adapt_step: float = 0.0
    adapt_down: bool = False  # may the adapting threshold fall below the one calibration learnt
    calibrated_threshold: float | None = None
    recent: list[float] = field(default_factory=list)
    scorer: str | None = None  # the model version whose scores the threshold was learnt from
    seen: int = 0
    normal_scores: list[float] = field(default_factory=list)
    smoothed: float | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # above-threshold run before opening
    quiet: int = 0  # consecutive segments under release while open
    open: dict[str, Any] | None = None
    max_gap_s: float = 0.0  # event_gap_s (0: never by time; states stored before it existed)
    relearn_after_s: float = 0.0  # event_relearn_after_s, calibrated mode (0: never; states stored before it)
    kept_floor: float | None = None  # while relearning after a change of scene: the floor learnt before it
    last_seq: int | None = None  # the previous segment's, to see the stream break
    last_t_end: str | None = None

    @classmethod
    def for_camera(cls, camera_id: str, params: CameraParams) -> EventTracker:
        cal = params.threshold_mode == "calibrated"
        return cls(
            camera_id=camera_id,
            threshold=params.threshold,
            release=params.release,
            min_event_segments=params.min_event_segments,
            end_after_segments=params.end_after_segments,
            alpha=params.smoothing_alpha,
            calibrated=not cal,  # True once thresholds are final
            skip=params.calibration_skip_segments if cal else 0,
            calib_n=params.calibration_segments if cal else 0,
            calib_q=params.calibration_quantile,
            calib_margin=params.calibration_margin,
            calib_floor=params.calibration_floor,
            adapt_window=params.threshold_adapt_window if cal else 0,
            adapt_step=params.threshold_adapt_step,
            adapt_down=params.threshold_adapt_down,
            max_gap_s=params.event_gap_s,
            relearn_after_s=params.event_relearn_after_s if cal else 0.0,
        )

    @property
    def calibrating(self) -> bool:
        return not self.calibrated

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventTracker:
        return cls(**d)  # a state stored before adaptation existed takes the dataclass defaults: frozen

    def retune(self, params: CameraParams) -> None:
        """New settings (reconfigure) apply from the next segment on; state and a learnt
        threshold are kept (a fixed-mode camera takes the new thresholds)."""
        if params.threshold_mode == "fixed":
            self.threshold, self.release, self.calibrated = params.threshold, params.release, True
            self.adapt_window, self.recent = 0, []
        else:
            self.adapt_window, self.adapt_step = params.threshold_adapt_window, params.threshold_adapt_step
            self.adapt_down = params.threshold_adapt_down
            self.recent = self.recent[-self.adapt_window:] if self.adapt_window else []
        self.min_event_segments, self.end_after_segments = params.min_event_segments, params.end_after_segments
        self.alpha = params.smoothing_alpha
        self.max_gap_s = params.event_gap_s
        self.relearn_after_s = params.event_relearn_after_s if params.threshold_mode == "calibrated" else 0.0

    def _stream_broke(self, seq: int, t_start: datetime) -> bool:
        if self.last_seq is None:
            return False
        if seq <= self.last_seq:
            return True
        if self.max_gap_s and self.last_t_end is not None:
            return (t_start - datetime.fromisoformat(self.last_t_end)).total_seconds() > self.max_gap_s
        return False

    def _relearn(self) -> None:
        """Another model scores the camera from now on (its scores live on another scale), or the
        scene changed under an event that lasted: the learnt threshold (and the adaptation window)
        no longer apply; learn them again."""
        self.calibrated, self.seen, self.skip, self.kept_floor = False, 0, 0, None
        self.normal_scores, self.recent, self.pending, self.smoothed = [], [], [], None

    def _calibrate(self, s: float) -> bool:
        """Feed one smoothed score to the calibration; True while still calibrating."""
        self.seen += 1
        if self.seen <= self.skip:
            return True
        self.normal_scores.append(round(s, 6))
        if len(self.normal_scores) < self.calib_n:
            return True
        import numpy as np

        learnt = float(np.quantile(np.asarray(self.normal_scores), self.calib_q)) + self.calib_margin
        self.threshold = round(min(0.99, max(self.calib_floor, learnt)), 6)
        # after a change of scene (same model) the threshold may come back down to where it was
        # learnt before it (dusk, then dawn); after a new model, the new scale sets the floor
        self.calibrated_threshold = self.threshold if self.kept_floor is None else min(self.kept_floor, self.threshold)
        self.kept_floor = None
        self._release_from(self.normal_scores)
        self.recent = self.normal_scores[-self.adapt_window:] if self.adapt_window else []
        self.normal_scores = []
        self.calibrated = True
        return False

    def _adapt(self, s: float) -> None:
        """One score outside events: move the learnt threshold a bounded step towards the window's level."""
        import numpy as np

        self.recent = (self.recent + [round(s, 6)])[-self.adapt_window:]
        if len(self.recent) < max(2, self.calib_n):
            return
        lowest = self.calib_floor if self.adapt_down or self.calibrated_threshold is None else self.calibrated_threshold
        target = min(0.99, max(lowest, float(np.quantile(np.asarray(self.recent), self.calib_q)) + self.calib_margin))
        step = min(max(target - self.threshold, -self.adapt_step), self.adapt_step)
        self.threshold = round(self.threshold + step, 6)
        self._release_from(self.recent)

    def _release_from(self, normal: list[float]) -> None:
        """A learnt threshold's release: 0.8 × threshold, or halfway from the normal level up to
        the threshold where that level sits higher."""
        import numpy as np

        level = float(np.median(np.asarray(normal))) if normal else 0.0
        self.release = round(min(self.threshold, max(0.8 * self.threshold, (level + self.threshold) / 2)), 6)

    # -- the rule
    def update(
        self,
        *,
        segment_id: str,
        seq: int,
        t_start: datetime,
        t_end: datetime,
        score: float,
        top_descriptions: list[dict[str, Any]] | None = None,
        scorer: str | None = None,
    ) -> list[Transition]:
        """``scorer``: the model version that produced ``score``; a calibrated camera relearns its
        threshold when it changes (None: unknown, never triggers relearning)."""
        out: list[Transition] = []
        if scorer is not None:
            if self.scorer is not None and scorer != self.scorer and self.calib_n:
                if self.open is not None:  # its threshold belonged to the old model: end it here
                    out.append(Transition("end", TrackedEvent(**self.open)))
                    self.open, self.quiet = None, 0
                self._relearn()
            self.scorer = scorer
        if self._stream_broke(seq, t_start):
            if self.open is not None:
                out.append(Transition("end", TrackedEvent(**self.open)))
                self.open, self.quiet = None, 0
            self.pending, self.smoothed = [], None
        self.last_seq, self.last_t_end = seq, t_end.isoformat()
        seg = _Seg(segment_id, seq, t_start.isoformat(), t_end.isoformat(), float(score), top_descriptions or [])
        self.smoothed = seg.score if self.smoothed is None else self.alpha * seg.score + (1 - self.alpha) * self.smoothed
        s = self.smoothed
        if not self.calibrated and self._calibrate(s):
            return out
        if self.open is None and self.adapt_window:
            self._adapt(s)
        if self.open is None:
            if s >= self.threshold:
                self.pending.append(asdict(seg))
                if len(self.pending) >= self.min_event_segments:
                    first = self.pending[0]
                    ev = TrackedEvent(
                        id=event_id(first["segment_id"]),
                        camera_id=self.camera_id,
                        first_seq=first["seq"],
                        last_seq=seg.seq,
                        t_start=first["t_start"],
                        t_end=seg.t_end,
                        peak_score=0.0,
                        top_descriptions=[],
                        segment_ids=[],
                    )
                    for p in self.pending:
                        _absorb(ev, _Seg(**p))
                    self.pending = []
                    self.quiet = 0
                    self.open = asdict(ev)
                    out.append(Transition("new", ev))
            else:
                self.pending = []
            return out

        ev = TrackedEvent(**self.open)
        if self.relearn_after_s and (t_end - datetime.fromisoformat(ev.t_start)).total_seconds() >= self.relearn_after_s:
            # open this long, it is the scene that changed: the event ends here, the threshold is learnt anew
            if s >= self.release:
                _absorb(ev, seg)
            self.open, self.quiet = None, 0
            floor = self.calibrated_threshold
            self._relearn()
            self.kept_floor = floor
            return [Transition("end", ev)]
        if s < self.release:
            self.quiet += 1
            if self.quiet >= self.end_after_segments:
                self.open = None
                self.quiet = 0
                return [Transition("end", ev)]
            return []
        self.quiet = 0
        _absorb(ev, seg)
        self.open = asdict(ev)
        return [Transition("update", ev)]


def _absorb(ev: TrackedEvent, seg: _Seg) -> None:
    ev.last_seq = seg.seq
    ev.t_end = seg.t_end
    ev.segment_ids.append(seg.segment_id)
    if seg.score >= ev.peak_score:
        ev.peak_score = seg.score
        ev.top_descriptions = seg.top


def severity(peak_score: float, threshold: float) -> str:
    """How far past the threshold the peak went: low / medium / high / critical."""
    margin = (peak_score - threshold) / max(1e-6, 1 - threshold)
    if margin >= 0.75:
        return "critical"
    if margin >= 0.4:
        return "high"
    if margin >= 0.15:
        return "medium"
    return "low"
