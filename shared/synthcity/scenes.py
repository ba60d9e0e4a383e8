"""Scene layouts: background, lighting, walking zones, normal traffic and normality rules.

A layout is drawn from a seed: camera height, focal length and tilt, road and path widths,
building heights and colours, parked cars, trees, shelves all vary, so held-out seeds are
held-out layouts *and* cameras. Each scene states what is normal there (``SCENE_RULES``):
cycling is normal on a street or in a parking lot and an anomaly on a campus walkway, a
plaza, a shop floor or a subway platform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import agents as A
from .camera import Camera, facade, fill_ground, ground_line, ipt, lamp_post, radial_light

ANOMALY_TYPES = (
    "running",
    "falling",
    "fighting",
    "loitering",
    "crowd_gathering",
    "wrong_way_vehicle",
    "vehicle_off_road",
    "cycling",
    "fire",
    "abandoned_object",
)

_PEOPLE = ("running", "falling", "fighting", "loitering", "crowd_gathering", "fire", "abandoned_object")


@dataclass(frozen=True)
class SceneRule:
    name: str
    phrases: tuple[str, ...]  # how captions name the scene
    zone_noun: str  # where people walk
    indoor: bool
    anomalies: tuple[str, ...]  # anomaly types that can happen here
    normal: tuple[str, ...]  # what is normal here, in words
    cycling_normal: bool


SCENE_RULES: dict[str, SceneRule] = {
    "street": SceneRule(
        "street", ("a city street with a pedestrian crossing", "a street crossing", "an urban street"), "sidewalk", False,
        _PEOPLE + ("wrong_way_vehicle", "vehicle_off_road"),
        ("cars drive along the road in their lane", "people walk on the sidewalk", "pedestrians cross at the crosswalk", "cyclists ride on the road"),
        True,
    ),
    "plaza": SceneRule(
        "plaza", ("a public plaza", "a paved town square", "a pedestrian plaza"), "plaza", False,
        _PEOPLE + ("vehicle_off_road", "cycling"),
        ("people walk across the plaza", "people pass by the fountain"),
        False,
    ),
    "campus_walkway": SceneRule(
        "campus_walkway", ("a campus walkway", "a footpath on a university campus", "a walkway between lawns"), "walkway", False,
        _PEOPLE + ("vehicle_off_road", "cycling"),
        ("students walk along the walkway", "people walk on the footpath"),
        False,
    ),
    "parking_lot": SceneRule(
        "parking_lot", ("a parking lot", "a car park", "an outdoor parking area"), "parking lot", False,
        _PEOPLE,
        ("cars drive slowly and park", "people walk to their cars", "people push shopping carts", "cars are parked"),
        True,
    ),
    "shop_floor": SceneRule(
        "shop_floor", ("a shop floor", "a supermarket aisle", "the inside of a store"), "aisle", True,
        _PEOPLE + ("cycling",),
        ("shoppers walk along the aisle", "customers push shopping carts"),
        False,
    ),
    "subway_platform": SceneRule(
        "subway_platform", ("a subway platform", "an underground train platform", "a metro station platform"), "platform", True,
        _PEOPLE + ("cycling",),
        ("passengers walk along the platform", "people wait for the train", "a train stops at the platform"),
        False,
    ),
}

SCENES: tuple[str, ...] = tuple(SCENE_RULES)


def _c(rng, base, jitter=18):
    return tuple(int(np.clip(b + rng.integers(-jitter, jitter + 1), 0, 255)) for b in base)


class Layout:
    """Base layout. Subclasses fill ``self.bg`` (day colours), lamps, zones and spawners."""

    name = ""

    def __init__(self, cam: Camera, rng: np.random.Generator, night: bool):
        self.cam, self.rng, self.night = cam, rng, night
        self.rule = SCENE_RULES[self.name]
        W, H = cam.width, cam.height
        self.bg = np.zeros((H, W, 3), np.uint8)
        self.lamps: list[tuple[float, float]] = []
        self.lit_rects: list[tuple[int, int, int, int]] = []
        self.static: list[A.Agent] = []  # depth-sorted with the moving agents
        self.zn = cam.z_near
        self.build()
        self._finish()

    # -- helpers ------------------------------------------------------------------
    def sky(self, color=(150, 185, 220)) -> None:
        y = int(self.cam.horizon)
        if y > 0:
            top = np.array(color, np.float32) * 0.8
            for r in range(min(y + 1, self.cam.height)):
                f = r / max(1, y)
                self.bg[r] = (top * (1 - f) + np.array(color, np.float32) * f).astype(np.uint8)

    def hw(self, z: float) -> float:
        return self.cam.half_width(z)

    def offscreen_x(self, z: float, side: float, extra: float = 2.0) -> float:
        return side * (self.hw(z) + extra)

    def facade_row(self, z: float, x0: float = -90, x1: float = 90, hmin=7.0, hmax=22.0, palette=None) -> None:
        rng = self.rng
        palette = palette or [(170, 150, 130), (140, 120, 110), (190, 180, 160), (120, 125, 135), (160, 90, 70), (200, 195, 185)]
        x = x0
        while x < x1:
            w = float(rng.uniform(8, 20))
            hgt = float(rng.uniform(hmin, hmax))
            col = _c(rng, palette[rng.integers(len(palette))])
            self._facade(x, x + w, z, hgt, col)
            x += w + float(rng.uniform(0, 1.5))

    def _facade(self, x0, x1, z, hgt, col) -> None:
        cam = self.cam
        facade(self.bg, cam, x0, x1, z, hgt, col, _c(self.rng, (70, 85, 100), 10), self.rng, lit=None)
        if self.night:  # remember some windows as lit
            s = cam.scale(z)
            xx = x0 + 1.0
            while xx + 1.4 < x1:
                yy = 1.2
                while yy + 1.5 < hgt:
                    if self.rng.random() < 0.35:
                        a = cam.project(xx, z, yy + 1.5)
                        self.lit_rects.append((int(a[0]), int(a[1]), int(a[0] + 1.4 * s) + 1, int(a[1] + 1.5 * s) + 1))
                    yy += 3.2
                xx += 3.0

    def texture(self, amount: float = 6.0) -> None:
        n = self.rng.normal(0, amount, self.bg.shape[:2]).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), 0.8)
        self.bg = np.clip(self.bg.astype(np.float32) + n[..., None], 0, 255).astype(np.uint8)

    def _finish(self) -> None:
        cam, rng = self.cam, self.rng
        H, W = cam.height, cam.width
        self.texture()
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
        vignette = 1.0 - 0.12 * r2
        if self.night:
            amb = 0.5 if self.rule.indoor else float(rng.uniform(0.2, 0.3))
            lm = np.full((H, W), amb, np.float32)
            for x, z in self.lamps:
                radial_light(lm, cam, x, z, 3.5 if not self.rule.indoor else 5.0, 0.9 if not self.rule.indoor else 0.5)
            lm = np.minimum(lm, 1.15) * vignette
            if not self.rule.indoor and cam.horizon > 0:
                lm[: max(0, int(cam.horizon))] = 0.3
            for x0, y0, x1, y1 in self.lit_rects:
                lm[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1.0
            tint = np.array([0.85, 0.9, 1.1] if not self.rule.indoor else [1.0, 0.97, 0.85], np.float32)
        else:
            lm = float(rng.uniform(0.85, 1.1)) * vignette
            tint = np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
        self.lightmap = lm
        self.bg = np.clip(self.bg.astype(np.float32) * lm[..., None] * tint, 0, 255).astype(np.uint8)
        if self.night:
            for x0, y0, x1, y1 in self.lit_rects:
                self.bg[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = (235, 210, 140)

    def light_at(self, x: float, z: float) -> float:
        px, py = self.cam.project(x, z)
        h, w = self.lightmap.shape
        return float(np.clip(self.lightmap[int(np.clip(py, 0, h - 1)), int(np.clip(px, 0, w - 1))], 0.15, 1.2))

    # -- what subclasses provide ------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def walk_z(self) -> tuple[float, float]:
        """Depth band where people normally walk (and where people events are staged)."""
        raise NotImplementedError

    def spot(self, rng, margin: float = 0.3) -> tuple[float, float]:
        """A visible ground point in the walking zone."""
        z0, z1 = self.walk_z()
        z = float(rng.uniform(z0, z1))
        hw = self.hw(z) * (1 - margin)
        return float(rng.uniform(-hw, hw)), z

    def walker_path(self, rng, z: float | None = None):
        """(start, end) ground points of a normal walk through the zone."""
        z0, z1 = self.walk_z()
        if z is None:
            z = float(rng.uniform(z0, z1))
        side = 1.0 if rng.random() < 0.5 else -1.0
        z_end = float(np.clip(z + rng.normal(0, 1.0), z0, z1))
        return (self.offscreen_x(z, -side), z), (self.offscreen_x(z_end, side), z_end)

    def off_road_path(self, rng):
        """Path of a vehicle driving where vehicles must not: through the walking zone."""
        z0, z1 = self.walk_z()
        z = float(rng.uniform(z0, z1))
        side = 1.0 if rng.random() < 0.5 else -1.0
        return (self.offscreen_x(z, -side, 4), z), (self.offscreen_x(z, side, 6), z)

    def spawners(self):
        """[(rate per second, callable(world))] for normal traffic."""
        return [(0.3, self.spawn_walker)]

    def spawn_walker(self, world, pose="walk", cart=False, uniform=None) -> None:
        rng = world.rng
        (x0, z0), (x1, z1) = self.walker_path(rng)
        p = A.new_person(rng, x0, z0, uniform=uniform, activity="cart" if cart else "walk")
        p.zone = self.rule.zone_noun
        p.backpack = bool(rng.random() < (0.5 if self.name == "campus_walkway" else 0.15))
        sp = float(rng.uniform(1.0, 1.6)) if not cart else float(rng.uniform(0.8, 1.2))
        mx, mz = (x0 + x1) / 2 + rng.normal(0, 2), (z0 + z1) / 2
        world.add(p.go(mx, mz, sp, "cart" if cart else "walk").go(x1, z1, sp, "cart" if cart else "walk").vanish())


# ---------------------------------------------------------------------------------------


class Street(Layout):
    name = "street"

    def build(self) -> None:
        cam, rng, bg = self.cam, self.rng, self.bg
        zn = self.zn
        self.sky()
        self.side_near = (zn - 1.5, zn + float(rng.uniform(3.0, 5.0)))
        rw = float(rng.uniform(7.0, 10.0))
        self.road = (self.side_near[1], self.side_near[1] + rw)
        self.side_far = (self.road[1], self.road[1] + float(rng.uniform(3.5, 5.0)))
        self.cross_x = float(rng.uniform(-4, 4))
        paving = _c(rng, (165, 160, 150))
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, 400), (-300, 400)], _c(rng, (120, 120, 115)))
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, self.road[0]), (-300, self.road[0])], paving)
        fill_ground(bg, cam, [(-300, self.road[0]), (300, self.road[0]), (300, self.road[1]), (-300, self.road[1])], _c(rng, (75, 75, 80), 10))
        fill_ground(bg, cam, [(-300, self.road[1]), (300, self.road[1]), (300, self.side_far[1]), (-300, self.side_far[1])], paving)
        for zz in self.road:
            ground_line(bg, cam, (-300, zz), (300, zz), (200, 200, 195), 0.2)
        mid = sum(self.road) / 2
        x = -120.0
        while x < 120:
            ground_line(bg, cam, (x, mid), (x + 3, mid), (235, 235, 230), 0.15)
            x += 7
        for zz in (self.road[0] + 1.3, self.road[1] - 1.3):  # bike lanes
            ground_line(bg, cam, (-300, zz), (300, zz), (230, 230, 230), 0.1)
        k = self.road[0] + 0.3
        while k < self.road[1] - 0.3:
            fill_ground(bg, cam, [(self.cross_x - 2, k), (self.cross_x + 2, k), (self.cross_x + 2, k + 0.5), (self.cross_x - 2, k + 0.5)], (235, 235, 235))
            k += 1.0
        self.facade_row(self.side_far[1])
        xl = float(rng.uniform(-20, -5))
        while xl < 40:
            lamp_post(bg, cam, xl, self.side_far[0] + 0.5)
            self.lamps.append((xl, self.side_far[0] + 0.5))
            self.lamps.append((xl + 2, self.road[0]))
            xl += float(rng.uniform(14, 20))
        self.lanes = [(self.road[0] + (rw / 2) * 0.5 + 0.4, 1.0), (self.road[1] - (rw / 2) * 0.5 - 0.4, -1.0)]

    def walk_z(self):
        return (max(self.side_near[0] + 0.5, self.zn + 0.8), self.side_near[1] - 0.5)

    def off_road_path(self, rng):
        z = float(rng.uniform(*self.walk_z()))
        side = 1.0 if rng.random() < 0.5 else -1.0
        return (self.offscreen_x(self.lanes[0][0], -side, 4), self.lanes[0][0]), (self.offscreen_x(z, side, 6), z)

    def spawners(self):
        return [(0.3, self.spawn_walker), (0.12, self.spawn_far_walker), (0.05, self.spawn_crosser),
                (0.14, self.spawn_car), (0.14, self.spawn_car_far), (0.05, self.spawn_cyclist)]

    def spawn_far_walker(self, world):
        rng = world.rng
        z = float(rng.uniform(self.side_far[0] + 0.5, self.side_far[1] - 0.5))
        side = 1.0 if rng.random() < 0.5 else -1.0
        p = A.new_person(rng, self.offscreen_x(z, -side), z)
        p.zone = "sidewalk"
        world.add(p.go(self.offscreen_x(z, side), z, float(rng.uniform(1.0, 1.6))).vanish())

    def spawn_crosser(self, world):
        rng = world.rng
        z = float(rng.uniform(*self.walk_z()))
        side = 1.0 if rng.random() < 0.5 else -1.0
        p = A.new_person(rng, self.offscreen_x(z, -side), z, activity="cross")
        p.zone = "crosswalk"
        sp = float(rng.uniform(1.1, 1.6))
        zf = float(rng.uniform(self.side_far[0] + 0.5, self.side_far[1] - 0.5))
        cx = self.cross_x + rng.uniform(-1.2, 1.2)
        world.add(p.go(cx, self.road[0] - 0.5, sp).go(cx, zf, sp).go(self.offscreen_x(zf, side), zf, sp).vanish())

    def _car(self, world, lane: int, wrong: bool = False):
        rng = world.rng
        z, d = self.lanes[lane]
        if wrong:
            d = -d
        car = A.new_car(rng, self.offscreen_x(z, -d, 5), z)
        sp = float(rng.uniform(7, 11))
        world.add(car.go(self.offscreen_x(z, d, 6), z, sp, "drive").vanish())
        return car

    def spawn_car(self, world):
        if world.recent("car_near", 1.6):
            return
        self._car(world, 0)

    def spawn_car_far(self, world):
        if world.recent("car_far", 1.6):
            return
        self._car(world, 1)

    def spawn_cyclist(self, world):
        rng = world.rng
        lane = int(rng.integers(2))
        z = self.road[0] + 0.7 if lane == 0 else self.road[1] - 0.7
        d = 1.0 if lane == 0 else -1.0
        c = A.new_cyclist(rng, self.offscreen_x(z, -d), z)
        c.zone = "road"
        world.add(c.go(self.offscreen_x(z, d), z, float(rng.uniform(4, 6.5)), "cycle").vanish())


class Plaza(Layout):
    name = "plaza"

    def build(self) -> None:
        cam, rng, bg = self.cam, self.rng, self.bg
        zn = self.zn
        self.sky()
        self.depth = float(rng.uniform(16, 24))
        tile = _c(rng, (185, 175, 160))
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, zn + self.depth + 6), (-300, zn + self.depth + 6)], tile)
        step = float(rng.uniform(1.5, 3.0))
        line = tuple(int(c * 0.85) for c in tile)
        for i in range(-60, 61):
            ground_line(bg, cam, (i * step, zn * 0.7), (i * step, zn + self.depth + 6), line, 0.05)
        zz = zn * 0.7
        while zz < zn + self.depth + 6:
            ground_line(bg, cam, (-300, zz), (300, zz), line, 0.05)
            zz += step
        self.fountain = (float(rng.uniform(-4, 4)), zn + self.depth * float(rng.uniform(0.55, 0.75)))
        fx, fz = self.fountain
        r = float(rng.uniform(2.0, 3.2))
        ring = [(fx + r * math.cos(t), fz + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 28)]
        fill_ground(bg, cam, ring, (150, 150, 155), y=0.5)
        ring2 = [(fx + 0.8 * r * math.cos(t), fz + 0.8 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 28)]
        fill_ground(bg, cam, ring2, (70, 120, 170), y=0.5)
        self.facade_row(zn + self.depth + 6)
        for _ in range(int(rng.integers(2, 5))):
            x, z = float(rng.uniform(-10, 10)), zn + float(rng.uniform(2, self.depth))
            if math.hypot(x - fx, z - fz) > r + 2:
                b = A.Agent("box", x, z, rng_colors=(_c(rng, (110, 80, 60)),), dims=(2.0, 1.0, 0.8))
                self.static.append(b)
                tr = A.Agent("tree", x, z, rng_colors=(_c(rng, (60, 120, 50)),), dims=(1.0, 0.8))
                self.static.append(tr)
        for i in range(3):
            x = float(rng.uniform(-12, 12))
            z = zn + float(rng.uniform(3, self.depth))
            lamp_post(bg, cam, x, z, 4.5)
            self.lamps.append((x, z))

    def walk_z(self):
        return (self.zn + 0.8, self.zn + self.depth * 0.55)

    def walker_path(self, rng, z=None):
        z0, z1 = self.zn + 0.5, self.zn + self.depth
        za, zb = float(rng.uniform(z0, z1)), float(rng.uniform(z0, z1))
        side = 1.0 if rng.random() < 0.5 else -1.0
        return (self.offscreen_x(za, -side), za), (self.offscreen_x(zb, side), zb)

    def spawners(self):
        return [(0.45, self.spawn_walker)]


class Campus(Layout):
    name = "campus_walkway"

    def build(self) -> None:
        cam, rng, bg = self.cam, self.rng, self.bg
        zn = self.zn
        self.sky()
        grass = _c(rng, (85, 140, 70), 14)
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, 400), (-300, 400)], grass)
        self.path = (zn + float(rng.uniform(1.0, 4.0)), 0.0)
        w = float(rng.uniform(2.5, 4.0))
        self.path = (self.path[0], self.path[0] + w)
        pave = _c(rng, (190, 180, 165))
        fill_ground(bg, cam, [(-300, self.path[0]), (300, self.path[0]), (300, self.path[1]), (-300, self.path[1])], pave)
        for zz in self.path:
            ground_line(bg, cam, (-300, zz), (300, zz), tuple(int(c * 0.8) for c in pave), 0.1)
        self.diag_x = float(rng.uniform(-5, 5))
        zb = self.path[1] + float(rng.uniform(12, 20))
        dx = float(rng.uniform(-6, 6))
        fill_ground(bg, cam, [(self.diag_x - 1.2, self.path[1]), (self.diag_x + 1.2, self.path[1]), (self.diag_x + dx + 1.2, zb), (self.diag_x + dx - 1.2, zb)], pave)
        self.diag_end = (self.diag_x + dx, zb)
        self.facade_row(zb + 0.5, hmin=9, hmax=16, palette=[(160, 85, 65), (175, 100, 80), (190, 180, 160)])
        for _ in range(int(rng.integers(3, 7))):
            x = float(rng.uniform(-14, 14))
            z = float(rng.uniform(self.path[1] + 2, zb - 2))
            if abs(x - self.diag_x - dx * (z - self.path[1]) / (zb - self.path[1])) > 2.5:
                self.static.append(A.Agent("tree", x, z, rng_colors=(_c(rng, (50, 110, 45)),), dims=(float(rng.uniform(1.5, 2.5)), float(rng.uniform(1.2, 2.2)))))
        x = float(rng.uniform(-15, -5))
        while x < 30:
            lamp_post(bg, cam, x, self.path[1] + 0.4, 4.0)
            self.lamps.append((x, self.path[1] + 0.4))
            x += float(rng.uniform(10, 16))

    def walk_z(self):
        return (max(self.path[0] + 0.4, self.zn + 0.5), self.path[1] - 0.4)

    def off_road_path(self, rng):
        z = float(rng.uniform(*self.walk_z()))
        side = 1.0 if rng.random() < 0.5 else -1.0
        return (self.offscreen_x(z, -side, 4), z), (self.offscreen_x(z + rng.uniform(-1, 3), side, 6), z)

    def spawners(self):
        return [(0.35, self.spawn_walker), (0.05, self.spawn_diag)]

    def spawn_diag(self, world):
        rng = world.rng
        z = float(rng.uniform(*self.walk_z()))
        side = 1.0 if rng.random() < 0.5 else -1.0
        p = A.new_person(rng, self.offscreen_x(z, side), z)
        p.backpack = bool(rng.random() < 0.5)
        p.zone = "walkway"
        sp = float(rng.uniform(1.0, 1.5))
        world.add(p.go(self.diag_x, z, sp).go(*self.diag_end, sp).vanish())


class ParkingLot(Layout):
    name = "parking_lot"

    def build(self) -> None:
        cam, rng, bg = self.cam, self.rng, self.bg
        zn = self.zn
        self.sky()
        asphalt = _c(rng, (95, 95, 98), 10)
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, 400), (-300, 400)], asphalt)
        bay_w = float(rng.uniform(2.4, 2.8))
        bay_l = 5.0
        z = zn + float(rng.uniform(-1.0, 2.0))
        self.aisles = []
        rows = []
        for i in range(3):
            rows.append((z, z + bay_l))
            z += bay_l
            if i < 2:
                aw = float(rng.uniform(6.0, 7.5))
                self.aisles.append((z, z + aw))
                z += aw
        off = float(rng.uniform(0, bay_w))
        for r0, r1 in rows:
            x = -60 + off
            while x < 60:
                ground_line(bg, cam, (x, r0 + 0.2), (x, r1 - 0.2), (225, 225, 215), 0.1)
                xc = x + bay_w / 2
                if rng.random() < 0.6 and r0 > zn - 0.5:
                    car = A.new_car(rng, xc, (r0 + r1) / 2, activity="parked")
                    car.hx, car.hz = 0.0, (1.0 if rng.random() < 0.5 else -1.0)
                    if abs(xc) < cam.half_width(r1) + 4:
                        self.static.append(car)
                x += bay_w
        self.facade_row(z + 6, hmin=5, hmax=9, palette=[(200, 195, 185), (180, 170, 150)])
        for a0, a1 in self.aisles:
            x = float(rng.uniform(-20, -8))
            while x < 25:
                self.lamps.append((x, (a0 + a1) / 2))
                x += float(rng.uniform(12, 18))
        for x, zz in self.lamps:
            lamp_post(bg, cam, x, zz, 6.0)

    def walk_z(self):
        a0, a1 = self.aisles[0]
        return (a0 + 0.8, a1 - 0.8)

    def walker_path(self, rng, z=None):
        a0, a1 = self.aisles[int(rng.integers(len(self.aisles)))]
        return super().walker_path(rng, float(rng.uniform(a0 + 0.8, a1 - 0.8)))

    def spawners(self):
        return [(0.15, self.spawn_walker), (0.08, lambda w: self.spawn_walker(w, cart=True)), (0.1, self.spawn_car), (0.015, self.spawn_cyclist)]

    def spawn_car(self, world):
        if world.recent("car", 3.0):
            return
        rng = world.rng
        a0, a1 = self.aisles[int(rng.integers(len(self.aisles)))]
        d = 1.0 if rng.random() < 0.5 else -1.0
        z = (a0 + a1) / 2 + d * -1.5
        car = A.new_car(rng, self.offscreen_x(z, -d, 4), z)
        world.add(car.go(self.offscreen_x(z, d, 5), z, float(rng.uniform(2.5, 4.5)), "drive").vanish())

    def spawn_cyclist(self, world):
        rng = world.rng
        a0, a1 = self.aisles[int(rng.integers(len(self.aisles)))]
        z = float(rng.uniform(a0 + 1, a1 - 1))
        d = 1.0 if rng.random() < 0.5 else -1.0
        c = A.new_cyclist(rng, self.offscreen_x(z, -d), z)
        world.add(c.go(self.offscreen_x(z, d), z, float(rng.uniform(3.5, 5.5)), "cycle").vanish())


class ShopFloor(Layout):
    name = "shop_floor"

    def build(self) -> None:
        cam, rng, bg = self.cam, self.rng, self.bg
        zn = self.zn
        self.depth = float(rng.uniform(14, 20))
        wall_z = zn + self.depth
        bg[:] = _c(rng, (215, 215, 205), 10)
        floor = _c(rng, (200, 190, 170), 15)
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, wall_z), (-300, wall_z)], floor)
        line = tuple(int(c * 0.88) for c in floor)
        step = float(rng.uniform(0.8, 1.5))
        for i in range(-80, 81):
            ground_line(bg, cam, (i * step, zn * 0.7), (i * step, wall_z), line, 0.03)
        zz = zn * 0.7
        while zz < wall_z:
            ground_line(bg, cam, (-300, zz), (300, zz), line, 0.03)
            zz += step
        wall = _c(rng, (225, 222, 210), 10)
        cv2.rectangle(bg, (0, 0), (cam.width, ipt(cam.project(0, wall_z))[1]), wall, -1)
        sy = cam.project(0, wall_z, 2.8)[1]
        cv2.rectangle(bg, (0, int(sy)), (cam.width, int(sy + 0.5 * cam.scale(wall_z))), _c(rng, (180, 40, 40), 30), -1)
        self.aisle_hw = float(rng.uniform(2.0, 3.0))
        prod = [(200, 60, 50), (60, 130, 200), (230, 200, 60), (90, 170, 90), (230, 130, 40), (150, 80, 160), (240, 240, 240)]
        for sgn in (-1, 1):
            x = sgn * (self.aisle_hw + 0.6)
            z = zn - 1.0
            while z < wall_z - 1:
                cols = ((120, 120, 125),) + tuple(prod[int(i)] for i in rng.integers(0, len(prod), 4))
                self.static.append(A.Agent("box", x, z + 1.0, hx=0.0, hz=1.0, rng_colors=cols, dims=(2.0, 1.0, 1.9)))
                z += 2.05
        for row in range(3):
            z = zn + 2 + row * self.depth / 3
            self.lamps.append((0.0, z))
        for row in range(4):
            yy = int(cam.height * 0.03 + row * 6 * cam.unit)
            if yy < cam.project(0, wall_z)[1] - 4:
                cv2.rectangle(bg, (int(cam.width * 0.4), yy), (int(cam.width * 0.6), yy + int(2 * cam.unit)), (250, 250, 245), -1)

    def walk_z(self):
        return (self.zn + 0.8, self.zn + self.depth * 0.6)

    def spot(self, rng, margin: float = 0.3):
        z = float(rng.uniform(*self.walk_z()))
        return float(rng.uniform(-self.aisle_hw + 0.6, self.aisle_hw - 0.6)), z

    def walker_path(self, rng, z=None):
        x0 = float(rng.uniform(-self.aisle_hw + 0.5, self.aisle_hw - 0.5))
        x1 = float(rng.uniform(-self.aisle_hw + 0.5, self.aisle_hw - 0.5))
        near, far = (x0, self.zn - 2.0), (x1, self.zn + self.depth - 1.0)
        return (near, far) if rng.random() < 0.5 else (far, near)

    def off_road_path(self, rng):
        return self.walker_path(rng)

    def spawners(self):
        return [(0.18, self.spawn_walker), (0.12, lambda w: self.spawn_walker(w, cart=True)),
                (0.03, lambda w: self.spawn_walker(w, uniform=(30, 110, 60)))]


class SubwayPlatform(Layout):
    name = "subway_platform"

    def build(self) -> None:
        cam, rng, bg = self.cam, self.rng, self.bg
        zn = self.zn
        self.edge = zn + float(rng.uniform(7, 10))
        track = (self.edge, self.edge + 4.5)
        wall_z = track[1] + 0.5
        bg[:] = _c(rng, (120, 125, 130), 10)
        floor = _c(rng, (175, 170, 160), 12)
        fill_ground(bg, cam, [(-300, zn * 0.6), (300, zn * 0.6), (300, self.edge), (-300, self.edge)], floor)
        fill_ground(bg, cam, [(-300, self.edge - 0.8), (300, self.edge - 0.8), (300, self.edge - 0.5), (-300, self.edge - 0.5)], (235, 200, 30))
        fill_ground(bg, cam, [(-300, track[0]), (300, track[0]), (300, track[1]), (-300, track[1])], (55, 50, 48), y=-1.0)
        for zz in (track[0] + 1.5, track[0] + 3.0):
            ground_line(bg, cam, (-300, zz), (300, zz), (150, 150, 150), 0.08, y=-0.85)
        fill_ground(bg, cam, [(-300, self.edge), (300, self.edge), (300, self.edge + 0.01), (-300, self.edge + 0.01)], (80, 80, 80))
        tile = _c(rng, (200, 205, 200), 20)
        top = ipt(cam.project(0, wall_z, 6.0))[1]
        bot = ipt(cam.project(0, wall_z, -1.0))[1]
        cv2.rectangle(bg, (0, max(0, top)), (cam.width, bot), tile, -1)
        s = cam.scale(wall_z)
        x = -40.0
        while x < 40:
            if rng.random() < 0.5:
                p0 = cam.project(x, wall_z, 3.0)
                col = tuple(int(c) for c in rng.integers(40, 230, 3))
                cv2.rectangle(bg, ipt(p0), ipt((p0[0] + 3.0 * s, p0[1] + 1.8 * s)), col, -1)
            x += 5.0
        stripe = cam.project(0, wall_z, 4.0)[1]
        cv2.rectangle(bg, (0, int(stripe)), (cam.width, int(stripe + 0.3 * s) + 1), _c(rng, (40, 90, 170), 40), -1)
        self.track_z = (track[0] + track[1]) / 2
        px = float(rng.uniform(-8, -3))
        while px < 15:
            self.static.append(A.Agent("box", px, self.edge - 3.0, rng_colors=(_c(rng, (160, 160, 165)),), dims=(0.7, 0.7, 6.0)))
            px += float(rng.uniform(8, 12))
        for i in range(4):
            self.lamps.append((float(rng.uniform(-8, 8)), zn + 2 + i * 2.0))

    def walk_z(self):
        return (self.zn + 0.8, self.edge - 1.2)

    def spawners(self):
        return [(0.3, self.spawn_walker), (0.07, self.spawn_waiter), (1 / 45.0, self.spawn_train)]

    def spawn_waiter(self, world):
        rng = world.rng
        z = float(rng.uniform(self.edge - 2.2, self.edge - 1.2))
        x = float(rng.uniform(-self.hw(z) * 0.8, self.hw(z) * 0.8))
        side = 1.0 if rng.random() < 0.5 else -1.0
        p = A.new_person(rng, self.offscreen_x(z, -side), z, activity="wait")
        p.zone = "platform"
        p.go(x, z, float(rng.uniform(1.0, 1.4))).stay(int(rng.uniform(6, 20) * world.fps), "stand", face=(0.0, 1.0))
        world.add(p.go(self.offscreen_x(z, side), z, 1.3).vanish())

    def spawn_train(self, world):
        if any(a.kind == "train" for a in world.agents):
            return
        rng = world.rng
        z = self.track_z
        t = A.Agent("train", -(self.hw(z) + 35), z, activity="train")
        fps = world.fps
        t.go(-12, z, 12.0, "drive").go(0, z, 4.0, "drive").stay(int(8 * fps), "stop").go(14, z, 4.0, "drive").go(self.hw(z) + 40, z, 12.0, "drive").vanish()
        world.add(t)


LAYOUTS: dict[str, type[Layout]] = {c.name: c for c in (Street, Plaza, Campus, ParkingLot, ShopFloor, SubwayPlatform)}
