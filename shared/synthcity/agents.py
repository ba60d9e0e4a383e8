"""Agents: people (walking, running, falling, fighting, pushing carts), cyclists, cars,
trains, dropped objects and fires — a scripted motion model and a perspective renderer.

An agent follows a queue of :class:`Action` s (go to a ground point at a speed with a pose,
stay for some frames with a pose, run a callback, vanish). Events and scene spawners
write those scripts; the world steps them at the camera's frame rate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from .camera import Camera, fill_box, ipt

SKIN = [(224, 172, 140), (198, 134, 96), (141, 85, 54), (236, 200, 170), (170, 110, 80)]
CLOTHES = [
    (40, 60, 120), (150, 30, 40), (30, 30, 34), (200, 200, 200), (60, 110, 60), (220, 170, 40),
    (90, 60, 130), (120, 120, 130), (20, 90, 150), (170, 90, 40), (230, 120, 150), (70, 70, 90),
]
PANTS = [(30, 40, 70), (40, 40, 44), (90, 80, 70), (20, 20, 24), (60, 70, 110), (150, 140, 120)]
CAR_COLORS = [(180, 30, 30), (230, 230, 235), (30, 30, 35), (40, 70, 150), (150, 150, 160), (200, 170, 40), (60, 110, 80)]


@dataclass
class Action:
    kind: str  # go | stay | call | vanish
    target: tuple[float, float] | None = None
    speed: float = 0.0
    pose: str = "walk"
    frames: int = 0
    fn: Callable[["Agent"], None] | None = None
    face: tuple[float, float] | None = None  # heading to keep while staying


@dataclass
class Agent:
    kind: str  # person | cyclist | car | cart | bag | fire | train
    x: float
    z: float
    rng_colors: tuple = ()
    hx: float = 1.0
    hz: float = 0.0
    pose: str = "stand"
    speed: float = 0.0
    phase: float = 0.0
    tilt: float = 0.0
    size: float = 1.0
    carry: bool = False  # carries a bag
    backpack: bool = False
    intensity: float = 0.0  # fire
    actions: deque = field(default_factory=deque)
    alive: bool = True
    activity: str = ""  # short label for captions (walk, wait, shop, drive, ...)
    zone: str = ""
    smoke: list = field(default_factory=list)
    dims: tuple = ()  # static box (length, width, height) or tree (trunk, crown radius)

    # ---- motion -------------------------------------------------------------------
    def go(self, x: float, z: float, speed: float, pose: str = "walk") -> "Agent":
        self.actions.append(Action("go", (x, z), speed, pose))
        return self

    def stay(self, frames: int, pose: str = "stand", face=None) -> "Agent":
        self.actions.append(Action("stay", frames=max(1, int(frames)), pose=pose, face=face))
        return self

    def call(self, fn) -> "Agent":
        self.actions.append(Action("call", fn=fn))
        return self

    def vanish(self) -> "Agent":
        self.actions.append(Action("vanish"))
        return self

    def step(self, dt: float) -> None:
        if self.actions:
            a = self.actions[0]
            if a.kind == "go":
                dx, dz = a.target[0] - self.x, a.target[1] - self.z
                d = math.hypot(dx, dz)
                self.pose, self.speed = a.pose, a.speed
                if d > 1e-6:
                    self.hx, self.hz = dx / d, dz / d
                if d <= a.speed * dt:
                    self.x, self.z = a.target
                    self.actions.popleft()
                else:
                    self.x += self.hx * a.speed * dt
                    self.z += self.hz * a.speed * dt
            elif a.kind == "stay":
                self.pose, self.speed = a.pose, 0.0
                if a.face is not None:
                    self.hx, self.hz = a.face
                a.frames -= 1
                if a.frames <= 0:
                    self.actions.popleft()
            elif a.kind == "call":
                self.actions.popleft()
                a.fn(self)
            elif a.kind == "vanish":
                self.alive = False
        else:
            self.speed = 0.0
            if self.kind == "person" and self.pose not in ("lie",):
                self.pose = "stand"
        rate = {"walk": 2.2, "run": 4.2, "fight": 6.0, "cycle": 1.4, "cart": 2.0, "getup": 0.0}.get(self.pose, 0.0)
        if self.pose in ("walk", "cart"):
            rate *= max(0.5, self.speed / 1.3)
        self.phase += 2 * math.pi * rate * dt
        if self.pose == "fall":
            self.tilt = min(math.pi / 2, self.tilt + dt * 3.2)
        elif self.pose == "lie":
            self.tilt = math.pi / 2
        elif self.pose == "getup":
            self.tilt = max(0.0, self.tilt - dt * 1.6)
        else:
            self.tilt = 0.0


# ---- rendering ---------------------------------------------------------------------


def _shade(color, f: float):
    return tuple(int(min(255, c * f)) for c in color)


def _screen_dir(cam: Camera, a: Agent) -> tuple[float, float]:
    """Screen-space heading: (sign of horizontal motion, fraction of motion that is sideways)."""
    x0, y0 = cam.project(a.x, a.z)
    x1, y1 = cam.project(a.x + a.hx * 0.5, a.z + a.hz * 0.5)
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy) + 1e-6
    side = abs(dx) / n
    return (1.0 if dx >= 0 else -1.0), side


def draw_person(img, cam: Camera, a: Agent, light: float) -> None:
    fx, fy = cam.project(a.x, a.z)
    s = cam.scale(a.z)
    h = 1.75 * a.size * s
    if h < 4:
        return
    skin, shirt, pants = (_shade(c, light) for c in a.rng_colors[:3])
    sgn, side = _screen_dir(cam, a)
    p = a.phase
    lean = 0.0
    lat = 0.35 + 0.65 * side
    pose = a.pose
    if pose in ("walk", "cart"):
        sw = 0.12 * math.sin(p) * lat
        feet = [(sw, 0.0), (-sw, 0.0)]
        knees = [(sw * 0.5, 0.26), (-sw * 0.5, 0.26)]
        hands = [(-sw * 0.9, 0.43), (sw * 0.9, 0.43)]
        if pose == "cart":
            hands = [(0.28, 0.52), (0.3, 0.5)]
            lean = 0.08
    elif pose == "run":
        sw = 0.30 * math.sin(p) * lat
        feet = [(sw, 0.02 + 0.06 * max(0, math.sin(p))), (-sw, 0.02 + 0.06 * max(0, -math.sin(p)))]
        knees = [(sw * 0.4 + 0.1, 0.3), (-sw * 0.4 + 0.1, 0.3)]
        hands = [(-sw * 0.6 + 0.12, 0.6), (sw * 0.6 + 0.12, 0.6)]
        lean = 0.3
    elif pose == "fight":
        sw = 0.06 * math.sin(p)
        feet = [(0.12, 0.0), (-0.1, 0.0)]
        knees = [(0.1, 0.27), (-0.08, 0.27)]
        hands = [(0.32 + 0.14 * math.sin(p), 0.74 + 0.08 * math.cos(p * 1.3)), (0.22 - 0.14 * math.sin(p), 0.68 + 0.1 * math.sin(p * 0.7))]
        lean = 0.12 + sw
    else:  # stand, fall, lie, getup, wait
        feet = [(0.05, 0.0), (-0.05, 0.0)]
        knees = [(0.04, 0.27), (-0.04, 0.27)]
        hands = [(0.09, 0.44), (-0.09, 0.44)]
        if pose in ("fall", "lie"):
            hands = [(0.25, 0.9), (0.1, 0.95)]
    t = a.tilt + lean
    ct, st = math.cos(t), math.sin(t)

    def P(u, v):
        return ipt((fx + sgn * (u * ct + v * st) * h, fy - (-u * st + v * ct) * h))

    hip, shoulder, head = P(0, 0.5), P(0, 0.78), P(0, 0.9)
    lw = max(1, int(round(0.075 * h)))
    aw = max(1, int(round(0.055 * h)))
    for (fu, fv), (ku, kv) in zip(feet, knees):
        cv2.line(img, hip, P(ku, kv), pants, lw, cv2.LINE_AA)
        cv2.line(img, P(ku, kv), P(fu, fv), pants, lw, cv2.LINE_AA)
    if a.backpack:
        cv2.line(img, P(-0.12, 0.55), P(-0.12, 0.75), _shade((50, 50, 60), light), max(1, int(0.13 * h)), cv2.LINE_AA)
    cv2.line(img, hip, shoulder, shirt, max(1, int(round(0.2 * h))), cv2.LINE_AA)
    elbow_v = 0.62
    for hu, hv in hands:
        el = P(hu * 0.5, (0.78 + hv) / 2 if pose != "run" else elbow_v - 0.1)
        cv2.line(img, shoulder, el, shirt, aw, cv2.LINE_AA)
        cv2.line(img, el, P(hu, hv), skin, aw, cv2.LINE_AA)
    if a.carry:
        hb = P(hands[0][0], hands[0][1] - 0.06)
        bw = max(1, int(0.12 * h))
        cv2.rectangle(img, (hb[0] - bw, hb[1]), (hb[0] + bw, hb[1] + int(0.22 * h)), _shade((40, 35, 30), light), -1)
    cv2.circle(img, head, max(1, int(round(0.075 * h))), skin, -1, cv2.LINE_AA)


def draw_cyclist(img, cam: Camera, a: Agent, light: float) -> None:
    s = cam.scale(a.z)
    if s * 1.75 < 4:
        return
    r = 0.34
    bx, bz = a.x - a.hx * 0.52, a.z - a.hz * 0.52
    fx_, fz = a.x + a.hx * 0.52, a.z + a.hz * 0.52
    back = cam.project(bx, bz, r)
    front = cam.project(fx_, fz, r)
    sgn, side = _screen_dir(cam, a)
    frame_c = _shade(a.rng_colors[3] if len(a.rng_colors) > 3 else (30, 90, 160), light)
    rad = r * s
    ax_w = max(1, int(rad * max(0.3, side)))
    t = max(1, int(0.05 * s))
    for c in (back, front):
        cv2.ellipse(img, ipt(c), (ax_w, max(1, int(rad))), 0, 0, 360, (25, 25, 25), t + 1, cv2.LINE_AA)
    seat = cam.project(a.x - a.hx * 0.15, a.z - a.hz * 0.15, 0.95)
    bar = cam.project(a.x + a.hx * 0.42, a.z + a.hz * 0.42, 1.05)
    crank = cam.project(a.x, a.z, 0.3)
    for p, q in ((back, crank), (crank, seat), (seat, back), (crank, front), (front, bar), (seat, bar)):
        cv2.line(img, ipt(p), ipt(q), frame_c, t, cv2.LINE_AA)
    skin, shirt, pants = (_shade(c, light) for c in a.rng_colors[:3])
    h = 1.75 * a.size * s
    ph = a.phase
    ped = (crank[0] + sgn * 0.09 * h * math.cos(ph) * max(0.3, side), crank[1] + 0.09 * h * math.sin(ph))
    shoulder = (seat[0] + sgn * 0.2 * h * max(0.4, side), seat[1] - 0.3 * h)
    knee = ((seat[0] + ped[0]) / 2 + sgn * 0.08 * h * max(0.4, side), (seat[1] + ped[1]) / 2 - 0.03 * h)
    lw = max(1, int(round(0.075 * h)))
    cv2.line(img, ipt(seat), ipt(knee), pants, lw, cv2.LINE_AA)
    cv2.line(img, ipt(knee), ipt(ped), pants, lw, cv2.LINE_AA)
    cv2.line(img, ipt(seat), ipt(shoulder), shirt, max(1, int(0.18 * h)), cv2.LINE_AA)
    cv2.line(img, ipt(shoulder), ipt(bar), skin, max(1, int(0.05 * h)), cv2.LINE_AA)
    head = (shoulder[0] + sgn * 0.05 * h, shoulder[1] - 0.11 * h)
    cv2.circle(img, ipt(head), max(1, int(0.075 * h)), skin, -1, cv2.LINE_AA)


def draw_car(img, cam: Camera, a: Agent, light: float, night: bool) -> None:
    L, W = 4.3 * a.size, 1.8
    color = a.rng_colors[0]
    body, top = _shade(color, 0.75 * light), _shade(color, 1.0 * light)
    for u in (-0.32, 0.32):
        for v in (-0.5, 0.5):
            wx = a.x + a.hx * u * L + a.hz * v * W
            wz = a.z + a.hz * u * L - a.hx * v * W
            c = cam.project(wx, wz, 0.32)
            cv2.circle(img, ipt(c), max(1, int(0.33 * cam.scale(wz))), (18, 18, 18), -1, cv2.LINE_AA)
    fill_box(img, cam, a.x, a.z, a.hx, a.hz, L, W, 0.3, 0.95, body, top)
    cx, cz = a.x - a.hx * 0.1 * L, a.z - a.hz * 0.1 * L
    win = (150, 190, 215) if not night else (30, 40, 55)
    fill_box(img, cam, cx, cz, a.hx, a.hz, 0.5 * L, 0.88 * W, 0.95, 1.45, _shade(win, light), top)
    s = cam.scale(a.z)
    lit = night and a.activity != "parked"
    for sign, col, glow in ((1, (255, 250, 210), 0.13), (-1, (220, 20, 20), 0.06)):
        for v in (-0.38, 0.38):
            wx = a.x + a.hx * sign * 0.5 * L + a.hz * v * W
            wz = a.z + a.hz * sign * 0.5 * L - a.hx * v * W
            p = ipt(cam.project(wx, wz, 0.7))
            rr = max(1, int((0.1 + (glow if lit else 0.0)) * s))
            cv2.circle(img, p, rr, col, -1, cv2.LINE_AA)


def draw_cart(img, cam: Camera, a: Agent, light: float) -> None:
    cx, cz = a.x + a.hx * 0.75, a.z + a.hz * 0.75
    metal = _shade((175, 178, 185), light)
    fill_box(img, cam, cx, cz, a.hx, a.hz, 0.85, 0.55, 0.25, 1.0, metal, _shade((95, 98, 105), light))
    s = cam.scale(cz)
    for u in (-0.35, 0.35):
        p = cam.project(cx + a.hx * u, cz + a.hz * u, 0.08)
        cv2.circle(img, ipt(p), max(1, int(0.08 * s)), (20, 20, 20), -1)


def draw_bag(img, cam: Camera, a: Agent, light: float) -> None:
    col = a.rng_colors[0] if a.rng_colors else (50, 40, 30)
    fill_box(img, cam, a.x, a.z, a.hx, a.hz, 0.5, 0.28, 0.0, 0.55, _shade(col, light), _shade(col, light * 1.3))


def draw_train(img, cam: Camera, a: Agent, light: float, night: bool) -> None:
    L = 60.0
    fill_box(img, cam, a.x, a.z, 1.0, 0.0, L, 3.0, 0.2, 3.6, _shade((170, 175, 185), light), _shade((200, 200, 205), light))
    z_front = a.z - 1.5
    s = cam.scale(z_front)
    x = a.x - L / 2 + 1.5
    win = (250, 240, 200) if night else (60, 80, 100)
    while x < a.x + L / 2 - 1.5:
        p0 = cam.project(x, z_front, 2.6)
        cv2.rectangle(img, ipt(p0), ipt((p0[0] + 1.8 * s, p0[1] + 0.9 * s)), win, -1)
        x += 2.6
    p0, p1 = cam.project(a.x - L / 2, z_front, 1.0), cam.project(a.x + L / 2, z_front, 1.0)
    cv2.line(img, ipt(p0), ipt(p1), (200, 40, 40), max(1, int(0.25 * s)))


def draw_fire(img, cam: Camera, a: Agent, rng: np.random.Generator) -> None:
    """Flickering flames and a rising plume of smoke; ``a.intensity`` in [0, 1]."""
    I = a.intensity
    s = cam.scale(a.z)
    bx, by = cam.project(a.x, a.z)
    if I > 0.02:
        # soft glow on the surroundings
        r = int(2.0 * I * s) + 2
        x0, y0 = int(max(0, bx - r)), int(max(0, by - 2 * r))
        x1, y1 = int(min(img.shape[1], bx + r)), int(min(img.shape[0], by + r // 2))
        if x1 > x0 and y1 > y0:
            yy, xx = np.ogrid[y0 - by + r : y1 - by + r, x0 - bx : x1 - bx]
            wgt = np.exp(-(xx * xx + yy * yy) / (0.5 * r * r)).astype(np.float32)[..., None] * I
            roi = img[y0:y1, x0:x1].astype(np.float32)
            roi += wgt * np.array([90.0, 40.0, 0.0], np.float32)
            img[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)
        for k in range(6):
            off = (k - 2.5) * 0.22 * I
            hgt = (0.6 + 1.1 * I) * (0.6 + 0.4 * math.sin(a.phase * (1.3 + 0.37 * k) + k)) + 0.15 * rng.random()
            wdt = 0.22 + 0.12 * I
            base = (bx + off * s, by)
            for frac, col in ((1.0, (200, 40, 10)), (0.75, (250, 130, 20)), (0.45, (255, 225, 90))):
                c = (base[0], base[1] - hgt * frac * s / 2)
                cv2.ellipse(img, ipt(c), (max(1, int(wdt * frac * s)), max(1, int(hgt * frac * s / 2))), 0, 0, 360, col, -1, cv2.LINE_AA)
    # smoke particles: [x, z, y, radius, age]
    if I > 0.05 and rng.random() < 0.9:
        a.smoke.append([a.x + rng.normal(0, 0.2), a.z, 1.2 + 1.0 * I, 0.3, 0.0])
    alive = []
    for p in a.smoke:
        p[2] += 0.12 + 0.03 * rng.random()
        p[0] += 0.04 + 0.03 * rng.normal()
        p[3] += 0.06
        p[4] += 1
        if p[4] < 45:
            alive.append(p)
    a.smoke = alive
    for p in a.smoke:
        c = ipt(cam.project(p[0], p[1], p[2]))
        rad = max(1, int(p[3] * s))
        x0, y0, x1, y1 = c[0] - rad, c[1] - rad, c[0] + rad + 1, c[1] + rad + 1
        if x1 <= 0 or y1 <= 0 or x0 >= img.shape[1] or y0 >= img.shape[0]:
            continue
        x0c, y0c, x1c, y1c = max(0, x0), max(0, y0), min(img.shape[1], x1), min(img.shape[0], y1)
        alpha = 0.55 * (1 - p[4] / 45.0)
        roi = img[y0c:y1c, x0c:x1c]
        yy, xx = np.ogrid[y0c - c[1] : y1c - c[1], x0c - c[0] : x1c - c[0]]
        mask = (xx * xx + yy * yy) <= rad * rad
        grey = np.array([105, 105, 110], dtype=np.float32)
        blended = roi.astype(np.float32) * (1 - alpha) + grey * alpha
        roi[mask] = blended[mask].astype(np.uint8)


def draw_agent(img, cam: Camera, a: Agent, light: float, night: bool, rng) -> None:
    if a.kind == "person":
        if a.pose == "cart":
            if a.hz > 0:  # cart is farther than the person: draw it first
                draw_cart(img, cam, a, light)
                draw_person(img, cam, a, light)
            else:
                draw_person(img, cam, a, light)
                draw_cart(img, cam, a, light)
        else:
            draw_person(img, cam, a, light)
    elif a.kind == "cyclist":
        draw_cyclist(img, cam, a, light)
    elif a.kind == "car":
        draw_car(img, cam, a, light, night)
    elif a.kind == "bag":
        draw_bag(img, cam, a, light)
    elif a.kind == "train":
        draw_train(img, cam, a, light, night)
    elif a.kind == "fire":
        draw_fire(img, cam, a, rng)
    elif a.kind == "box":
        L, W, H = a.dims
        col = a.rng_colors[0]
        fill_box(img, cam, a.x, a.z, a.hx, a.hz, L, W, 0.0, H, _shade(col, 0.8 * light), _shade(col, light))
        for k, c in enumerate(a.rng_colors[1:]):  # shelf levels
            y0 = 0.15 + k * (H - 0.2) / max(1, len(a.rng_colors) - 1)
            fill_box(img, cam, a.x - a.hz * 0.05 * a.hx, a.z, a.hx, a.hz, L * 0.96, W * 1.02, y0, y0 + 0.28, _shade(c, light))
    elif a.kind == "tree":
        trunk, crown = a.dims
        s = cam.scale(a.z)
        b, t = cam.project(a.x, a.z), cam.project(a.x, a.z, trunk)
        cv2.line(img, ipt(b), ipt(t), _shade((90, 60, 35), light), max(1, int(0.3 * s)), cv2.LINE_AA)
        c = cam.project(a.x, a.z, trunk + crown * 0.8)
        cv2.circle(img, ipt(c), max(1, int(crown * s)), _shade(a.rng_colors[0], light), -1, cv2.LINE_AA)
        cv2.circle(img, ipt((c[0] - 0.3 * crown * s, c[1] - 0.3 * crown * s)), max(1, int(0.55 * crown * s)), _shade(a.rng_colors[0], light * 1.2), -1, cv2.LINE_AA)


def new_person(rng: np.random.Generator, x: float, z: float, *, activity: str = "walk", uniform=None) -> Agent:
    colors = (
        SKIN[rng.integers(len(SKIN))],
        uniform or CLOTHES[rng.integers(len(CLOTHES))],
        PANTS[rng.integers(len(PANTS))],
    )
    return Agent("person", x, z, rng_colors=colors, size=float(rng.uniform(0.9, 1.08)), phase=float(rng.uniform(0, 6.28)), activity=activity)


def new_cyclist(rng: np.random.Generator, x: float, z: float) -> Agent:
    a = new_person(rng, x, z, activity="cycle")
    a.kind = "cyclist"
    a.pose = "cycle"
    a.rng_colors = a.rng_colors + (CAR_COLORS[rng.integers(len(CAR_COLORS))],)
    return a


def new_car(rng: np.random.Generator, x: float, z: float, activity: str = "drive") -> Agent:
    return Agent("car", x, z, rng_colors=(CAR_COLORS[rng.integers(len(CAR_COLORS))],), size=float(rng.uniform(0.95, 1.1)), activity=activity)
