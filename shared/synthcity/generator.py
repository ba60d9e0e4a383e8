"""The world loop, the camera source and clip rendering.

``SynthCamera(scene, seed)`` is an endless camera: normal traffic of its scene with
anomalies staged at random (``anomaly_rate`` ≈ fraction of anomalous frames).
``render_clip(scene, seed, n_frames, ...)`` renders a finite clip with chosen anomalies.
Everything is a pure function of the arguments: the layout and camera come from
``seed`` (stream 11), the simulation from stream 22, sensor noise from stream 33.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import cv2
import numpy as np

from .agents import draw_agent
from .camera import Camera
from .events import EVENTS, Event
from .scenes import ANOMALY_TYPES, LAYOUTS, SCENE_RULES, SCENES

__all__ = ["SynthCamera", "render_clip", "Clip", "FrameInfo", "AnomalySpec", "World", "SCENES", "ANOMALY_TYPES"]

NIGHT_PROBABILITY = 0.35
_NUM = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


class FrameInfo(NamedTuple):
    index: int
    label: int  # 1: an anomaly of this scene is happening
    anomaly_type: str | None
    caption: str
    staged: str | None = None  # the staged behaviour in view, abnormal here or not (cycling on a street)


@dataclass
class Clip:
    scene: str
    seed: int
    night: bool
    fps: float
    frames: np.ndarray  # [N, H, W, 3] uint8 RGB
    labels: np.ndarray  # [N] int64 0/1
    types: list  # [N] anomaly type or None
    captions: list  # [N] str
    staged: list  # [N] staged behaviour or None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class AnomalySpec:
    type: str
    start: int  # frame at which the event begins (its agents enter; the label follows what they do)


# who walks in a scene (one, many), when it is not "a person"
_WHO = {"campus_walkway": ("a student", "students"), "shop_floor": ("a shopper", "shoppers"),
        "subway_platform": ("a passenger", "passengers")}


def _count(n: int, one: str, many: str) -> str:
    return one if n == 1 else f"{_NUM.get(n, 'several' if n < 8 else 'many')} {many}"


class World:
    """One camera's scene: layout, agents, staged events, renderer."""

    def __init__(self, scene: str, seed: int, width: int = 320, height: int = 240, fps: float = 10.0, night: bool | None = None):
        if scene not in LAYOUTS:
            raise ValueError(f"unknown scene {scene!r}; known: {', '.join(SCENES)}")
        if width < 64 or height < 48 or fps <= 0:
            raise ValueError("width >= 64, height >= 48 and fps > 0 required")
        self.scene, self.seed, self.fps, self.dt = scene, int(seed), float(fps), 1.0 / float(fps)
        lay = np.random.default_rng([self.seed, 11])
        cam = Camera(
            width=int(width), height=int(height),
            focal=float(width * lay.uniform(0.95, 1.3)),
            height_m=float(lay.uniform(4.5, 7.5)),
            horizon=float(height * lay.uniform(-0.1, 0.25)),
        )
        if night is None:
            night = bool(lay.random() < NIGHT_PROBABILITY)
        self.night = bool(night)
        self.cam = cam
        self.layout = LAYOUTS[scene](cam, lay, self.night)
        self.rule = SCENE_RULES[scene]
        self.rng = np.random.default_rng([self.seed, 22])
        self.noise_rng = np.random.default_rng([self.seed, 33])
        sigma = float(self.noise_rng.uniform(5, 8) if self.night else self.noise_rng.uniform(2, 4))
        self.noise = [self.noise_rng.normal(0, sigma, (height, width, 1)).astype(np.int16) for _ in range(8)]
        self.agents = []
        self._bake_static()
        self.events: list[Event] = []
        self.frame = 0
        self._last: dict[str, float] = {}
        self._spawners = self.layout.spawners()
        self.scene_phrase = self.rule.phrases[int(lay.integers(len(self.rule.phrases)))]
        self.cap_rng = np.random.default_rng([self.seed, 44])

    def _bake_static(self) -> None:
        """Draw parked cars, trees, shelves, pillars once into the background; remember
        their screen boxes so that one is redrawn only over an agent it hides."""
        cam, lay = self.cam, self.layout
        self.bg = lay.bg.copy()
        self.static = []
        blank = np.zeros((cam.height, cam.width, 3), np.uint8)
        for a in sorted(lay.static, key=lambda a: -a.z):
            blank[:] = 0
            light = lay.light_at(a.x, a.z)
            draw_agent(blank, cam, a, max(light, 0.05), self.night, self.rng)
            pts = cv2.findNonZero(blank.max(axis=2))
            if pts is None:
                continue
            x, y, w, h = cv2.boundingRect(pts)
            draw_agent(self.bg, cam, a, light, self.night, self.rng)
            self.static.append((a, (x, y, x + w, y + h)))

    def add(self, agent) -> None:
        self.agents.append(agent)

    def recent(self, key: str, seconds: float) -> bool:
        """True if ``key`` happened within ``seconds``; otherwise records it now."""
        t = self.frame * self.dt
        if t - self._last.get(key, -1e9) < seconds:
            return True
        self._last[key] = t
        return False

    def stage(self, kind: str) -> Event:
        if kind not in EVENTS:
            raise ValueError(f"unknown anomaly type {kind!r}; known: {', '.join(ANOMALY_TYPES)}")
        if kind not in self.rule.anomalies and kind != "cycling":
            raise ValueError(f"{kind!r} cannot be staged in a {self.scene} (possible: {', '.join(self.rule.anomalies)})")
        ev = EVENTS[kind](self, self.rng)
        ev.begin()
        self.events.append(ev)
        return ev

    def step(self) -> None:
        for rate, fn in self._spawners:
            if self.rng.random() < rate * self.dt:
                fn(self)
        for ev in self.events:
            ev.update()
        for a in self.agents:
            a.step(self.dt)
        self.agents = [a for a in self.agents if a.alive]
        self.events = [e for e in self.events if not e.done]
        self.frame += 1

    def warmup(self, seconds: float) -> None:
        """Simulate without rendering so the scene starts populated."""
        for _ in range(int(seconds * self.fps)):
            self.step()
        self.frame = 0
        self._last = {k: v - seconds for k, v in self._last.items()}

    # -- observation -----------------------------------------------------------------------
    def render(self) -> np.ndarray:
        cam, lay = self.cam, self.layout
        img = self.bg.copy()
        todo = []
        for a in self.agents:
            if abs(a.x) > cam.half_width(max(a.z, 1.0)) + (40 if a.kind == "train" else 6):
                continue
            todo.append(a)
        if self.static and todo:
            boxes = []
            for a in todo:
                s = cam.scale(a.z)
                ext = 35.0 if a.kind == "train" else (3.5 if a.kind in ("car", "fire") else 1.5)
                x, y = cam.project(a.x, a.z)
                boxes.append((x - ext * s, y - (4.0 if a.kind in ("fire", "train") else 2.2) * s, x + ext * s, y + 0.5 * s, a.z))
            for st, (x0, y0, x1, y1) in self.static:
                if any(bz > st.z and bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0 for bx0, by0, bx1, by1, bz in boxes):
                    todo.append(st)
        for a in sorted(todo, key=lambda a: -a.z):
            draw_agent(img, cam, a, lay.light_at(a.x, a.z), self.night, self.rng)
        n = self.noise[int(self.noise_rng.integers(len(self.noise)))]
        return np.clip(img.astype(np.int16) + n, 0, 255).astype(np.uint8)

    def info(self, index: int) -> FrameInfo:
        active = [e for e in self.events if e.active]
        abnormal = [e for e in active if e.abnormal]
        label = 1 if abnormal else 0
        typ = abnormal[0].type if abnormal else None
        staged = active[0].type if active else None
        return FrameInfo(index, label, typ, self.caption(active), staged)

    def caption(self, active: list[Event]) -> str:
        cam = self.cam
        rule = self.rule
        counts: dict[str, int] = {}
        for a in self.agents:
            if a.activity in ("", "event", "parked") and a.kind != "car":
                continue
            if not cam.in_view(a.x, a.z, 0.3) and a.kind != "train":
                continue
            if a.kind == "train" and abs(a.x) > cam.half_width(a.z) + 30:
                continue
            key = a.activity if a.kind != "car" or a.activity == "parked" else "drive"
            if a.activity == "event":
                continue
            counts[key] = counts.get(key, 0) + 1
        parts = []
        zone = rule.zone_noun
        n = counts.get("walk", 0) + counts.get("cross", 0)
        if n:
            who = _WHO.get(self.scene, ("a person", "people"))
            parts.append(f"{_count(n, who[0], who[1])} {'walks' if n == 1 else 'walk'} on the {zone}")
        if counts.get("cross"):
            parts.append("a pedestrian crosses at the crosswalk")
        if counts.get("cart"):
            parts.append(f"{_count(counts['cart'], 'a shopper pushes a cart', 'shoppers push carts')}")
        if counts.get("wait"):
            parts.append(f"{_count(counts['wait'], 'a passenger waits', 'passengers wait')} for the train")
        if counts.get("drive"):
            where = "along the road" if self.scene == "street" else "slowly through the lot"
            parts.append(f"{_count(counts['drive'], 'a car drives', 'cars drive')} {where}")
        if counts.get("cycle"):
            parts.append("a cyclist rides on the road" if self.scene == "street" else "a cyclist rides by")
        if counts.get("train"):
            parts.append("a train at the platform")
        if counts.get("parked"):
            parts.append("parked cars")
        if not parts:
            parts.append(f"the {zone} is empty")
        tod = "at night" if self.night else "during the day"
        body = f"{self.scene_phrase} {tod}, " + " and ".join(parts[:2])
        lead = [e.phrase for e in active]
        return (". ".join(lead) + ". " + body) if lead else body


class ObjectCaption(NamedTuple):
    """Ground truth of one visible agent: where its body centre is in the image and what it does."""

    x: float
    y: float
    caption: str
    abnormal: bool


def object_captions(world: World) -> list[ObjectCaption]:
    """Every captioned agent in view now, for object-level (crop) captions: an agent of an
    active event says the event's phrase (an abandoned-object event: only the bag); the
    rest say what they do, in the words of :meth:`World.caption`. Fires, carts and trains
    have no caption of their own (a cart goes with its shopper)."""
    cam, zone, scene = world.cam, world.rule.zone_noun, world.scene
    who = _WHO.get(scene, ("a person", "people"))[0]
    event_of = {id(a): e for e in world.events for a in e.agents}
    out = []
    for a in world.agents:
        if not a.alive or not cam.in_view(a.x, a.z, 0.3):
            continue
        ev = event_of.get(id(a))
        if ev is not None and ev.active and not (ev.type == "abandoned_object" and a.kind != "bag"):
            cap, abnormal = ev.phrase, ev.abnormal
        elif a.kind in ("fire", "cart", "train"):
            continue
        elif a.kind == "bag":
            cap, abnormal = "a bag on the ground", False
        elif a.kind == "car":
            cap = "a parked car" if a.activity == "parked" else (
                "a car drives along the road" if scene == "street" else "a car drives slowly through the lot")
            abnormal = False
        elif a.kind == "cyclist":
            cap, abnormal = "a cyclist rides by", False
        elif a.pose == "cart":
            cap, abnormal = "a shopper pushes a cart", False
        elif a.activity == "wait" or a.pose in ("stand", "wait"):
            cap = "a passenger waits for the train" if scene == "subway_platform" else f"{who} stands on the {zone}"
            abnormal = False
        else:
            cap, abnormal = (f"{who} carries a bag on the {zone}" if a.carry else f"{who} walks on the {zone}"), False
        x, y = cam.project(a.x, a.z)
        out.append(ObjectCaption(x, y - 0.6 * cam.scale(a.z), cap, abnormal))
    return out


class SynthCamera:
    """An endless synthetic camera: ``frames()`` yields ``(frame, FrameInfo)`` forever.

    ``anomaly_rate`` is the approximate fraction of anomalous frames; anomalies are drawn
    uniformly from the scene's possible types (``SCENE_RULES[scene].anomalies``), one at a
    time, separated by normal periods. ``night=None`` lets the seed decide.
    """

    MEAN_EVENT_S = 10.0

    def __init__(self, scene: str, seed: int, width: int = 320, height: int = 240, fps: float = 10.0,
                 anomaly_rate: float = 0.1, *, night: bool | None = None, warmup_s: float = 20.0):
        if not 0.0 <= anomaly_rate < 1.0:
            raise ValueError("anomaly_rate must lie in [0, 1)")
        self.scene, self.seed, self.width, self.height, self.fps = scene, int(seed), int(width), int(height), float(fps)
        self.anomaly_rate = float(anomaly_rate)
        self.night, self.warmup_s = night, float(warmup_s)
        self.world = World(scene, seed, width, height, fps, night)  # validates arguments early

    def frames(self) -> Iterator[tuple[np.ndarray, FrameInfo]]:
        w = World(self.scene, self.seed, self.width, self.height, self.fps, self.night)
        self.world = w
        w.warmup(self.warmup_s)
        sched = np.random.default_rng([self.seed, 55])
        types = w.rule.anomalies
        r = self.anomaly_rate
        gap_mean = self.MEAN_EVENT_S * (1 - r) / r if r > 0 else math.inf

        def next_gap() -> int:
            return int(max(3.0, sched.exponential(gap_mean)) * self.fps) if r > 0 else -1

        next_at = next_gap()
        i = 0
        while True:
            if r > 0 and i >= next_at and not any(e.abnormal for e in w.events):
                w.stage(types[int(sched.integers(len(types)))])
                next_at = i + next_gap() + int(self.MEAN_EVENT_S * self.fps * 0.5)
            w.step()
            yield w.render(), w.info(i)
            i += 1


def _specs(anomalies: Sequence, n_frames: int, fps: float) -> list[AnomalySpec]:
    out = []
    plain = [a for a in anomalies if isinstance(a, str)]
    k = 0
    for a in anomalies:
        if isinstance(a, AnomalySpec):
            out.append(a)
        elif isinstance(a, str):
            start = int((k + 0.1) * n_frames / max(1, len(plain)))
            out.append(AnomalySpec(a, start))
            k += 1
        elif isinstance(a, dict):
            out.append(AnomalySpec(a["type"], int(a.get("start", 0))))
        else:
            t, s = a
            out.append(AnomalySpec(str(t), int(s)))
    return sorted(out, key=lambda s: s.start)


def run_world(scene: str, seed: int, n_frames: int, width: int = 320, height: int = 240, fps: float = 10.0,
              anomalies: Sequence = (), *, night: bool | None = None, warmup_s: float = 20.0) -> Iterator[World]:
    """Step one camera's world ``n_frames`` times, staging ``anomalies`` on schedule, and yield
    it after every step (not yet rendered): for callers that need the scene's state (agents,
    events) beside the frames. :func:`render_clip` is the frames-and-labels view of it.

    ``anomalies``: as for :func:`render_clip`; they are validated before any work.
    """
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    w = World(scene, seed, width, height, fps, night)
    specs = _specs(anomalies, n_frames, fps)
    for s in specs:  # validate before the work
        if s.type not in EVENTS:
            raise ValueError(f"unknown anomaly type {s.type!r}; known: {', '.join(ANOMALY_TYPES)}")
        if s.type != "cycling" and s.type not in w.rule.anomalies:
            raise ValueError(f"{s.type!r} cannot be staged in a {scene} (possible: {', '.join(w.rule.anomalies)})")
    w.warmup(warmup_s)
    j = 0
    for i in range(n_frames):
        while j < len(specs) and specs[j].start <= i:
            w.stage(specs[j].type)
            j += 1
        w.step()
        yield w


def lighting_gain(keyframes: Sequence[tuple[int, float]], n_frames: int) -> np.ndarray:
    """Per-frame scene brightness from ``(frame, gain)`` keyframes, linear in between (a dusk:
    ``[(a, 1.0), (b, 0.3)]``), held flat before the first and after the last."""
    if not keyframes:
        return np.ones(n_frames)
    ks = sorted((int(f), float(g)) for f, g in keyframes)
    if any(g <= 0 for _, g in ks):
        raise ValueError("lighting gains must be > 0")
    return np.interp(np.arange(n_frames), [f for f, _ in ks], [g for _, g in ks])


def render_clip(scene: str, seed: int, n_frames: int, width: int = 320, height: int = 240, fps: float = 10.0,
                anomalies: Sequence = (), *, night: bool | None = None, warmup_s: float = 20.0,
                lighting: Sequence[tuple[int, float]] = ()) -> Clip:
    """Render ``n_frames`` of ``scene`` with the given staged behaviours.

    ``anomalies``: anomaly type names (spread evenly over the clip), ``(type, start_frame)``
    pairs, dicts ``{"type", "start"}`` or :class:`AnomalySpec`. ``"cycling"`` may be staged
    in any scene; where cycling is normal (street, parking lot) it is labelled 0 but marked
    in ``Clip.staged``. Any other type must be possible in the scene (``SCENE_RULES``).

    ``lighting``: a change of the light over the clip (:func:`lighting_gain` keyframes): each
    frame's brightness is scaled by its gain and, as a camera's gain control would, the
    darker it gets the more sensor noise it shows. A normal change, never labelled.
    """
    gain = lighting_gain(lighting, max(n_frames, 0))
    light_rng = np.random.default_rng(int(seed) + 7919)
    frames = np.empty((max(n_frames, 0), int(height), int(width), 3), np.uint8)
    labels = np.zeros(max(n_frames, 0), np.int64)
    types, caps, staged = [], [], []
    w = None
    for i, w in enumerate(run_world(scene, seed, n_frames, width, height, fps, anomalies, night=night, warmup_s=warmup_s)):
        img = w.render()
        if gain[i] != 1.0:
            noisy = img.astype(np.float32) * gain[i] + light_rng.normal(0, 6.0 * max(0.0, 1 - gain[i]), img.shape)
            img = np.clip(noisy, 0, 255).astype(np.uint8)
        frames[i] = img
        inf = w.info(i)
        labels[i] = inf.label
        types.append(inf.anomaly_type)
        caps.append(inf.caption)
        staged.append(inf.staged)
    return Clip(scene, int(seed), w.night, float(fps), frames, labels, types, caps, staged)
