"""Pinhole camera over a flat ground plane, and the drawing primitives built on it.

World coordinates: ``X`` lateral (metres, right is positive), ``Z`` depth from the camera
(metres, forward), ``Y`` height above the ground. The camera sits at ``X = 0``, ``height_m``
above the ground, looking along ``Z`` with the horizon at image row ``horizon``; a ground
point projects to ``x = W/2 + F X / Z``, ``y = horizon + F (height_m - Y) / Z``. Sizes therefore
shrink with depth (``F / Z`` pixels per metre) and straight ground lines stay straight, so a
ground polygon is drawn by projecting its corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    focal: float  # pixels
    height_m: float  # camera height above the ground
    horizon: float  # image row of the horizon (may be < 0: steep camera, no sky)

    @property
    def z_near(self) -> float:
        """Depth of the ground seen at the bottom row."""
        return self.focal * self.height_m / (self.height - self.horizon)

    @property
    def unit(self) -> float:
        """Line-thickness unit: 1 at 320 px wide."""
        return self.width / 320.0

    def project(self, x: float, z: float, y: float = 0.0) -> tuple[float, float]:
        z = max(z, 0.3)
        return self.width / 2 + self.focal * x / z, self.horizon + self.focal * (self.height_m - y) / z

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.focal / max(z, 0.3)

    def half_width(self, z: float) -> float:
        """Half the visible ground width (metres) at depth ``z``."""
        return self.width / 2 / self.focal * z

    def in_view(self, x: float, z: float, margin_m: float = 0.0) -> bool:
        return z > self.z_near * 0.85 and abs(x) < self.half_width(z) + margin_m


def ipt(p: tuple[float, float]) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def fill_ground(img: np.ndarray, cam: Camera, poly_xz, color, y: float = 0.0) -> None:
    """Fill a polygon given by ground corners ``[(X, Z), ...]`` (all Z > 0)."""
    pts = np.array([ipt(cam.project(x, z, y)) for x, z in poly_xz], dtype=np.int32)
    cv2.fillPoly(img, [pts], tuple(int(c) for c in color), lineType=cv2.LINE_AA)


def ground_line(img, cam: Camera, a, b, color, thick_m: float = 0.12, y: float = 0.0) -> None:
    za = (a[1] + b[1]) / 2
    t = max(1, int(round(thick_m * cam.scale(za))))
    cv2.line(img, ipt(cam.project(a[0], a[1], y)), ipt(cam.project(b[0], b[1], y)), tuple(int(c) for c in color), t, cv2.LINE_AA)


def box_corners(x: float, z: float, hx: float, hz: float, length: float, width: float, y0: float, y1: float):
    """The 8 corners (X, Y, Z) of a box centred at ground point (x, z), long side along (hx, hz)."""
    rx, rz = hz, -hx
    out = []
    for yy in (y0, y1):
        for a in (-0.5, 0.5):
            for b in (-0.5, 0.5):
                out.append((x + hx * a * length + rx * b * width, yy, z + hz * a * length + rz * b * width))
    return out


def fill_box(img, cam: Camera, x, z, hx, hz, length, width, y0, y1, color, top_color=None) -> None:
    """Draw an opaque box: its silhouette in ``color`` and its top face in ``top_color``."""
    corners = box_corners(x, z, hx, hz, length, width, y0, y1)
    pts = np.array([ipt(cam.project(cx, cz, cy)) for cx, cy, cz in corners], dtype=np.int32)
    hull = cv2.convexHull(pts)
    cv2.fillConvexPoly(img, hull, tuple(int(c) for c in color), lineType=cv2.LINE_AA)
    if top_color is not None:
        top = pts[[4, 5, 7, 6]]
        cv2.fillConvexPoly(img, top, tuple(int(c) for c in top_color), lineType=cv2.LINE_AA)


def facade(img, cam: Camera, x0: float, x1: float, z: float, height: float, color, window_color, rng, lit=None) -> None:
    """A building front standing at depth ``z`` with a grid of windows; ``lit`` = chance a window is lit."""
    p0 = cam.project(x0, z, height)
    p1 = cam.project(x1, z, 0.0)
    cv2.rectangle(img, ipt(p0), ipt(p1), tuple(int(c) for c in color), -1)
    s = cam.scale(z)
    step_x, step_y = 3.0, 3.2
    wx = 1.4 * s
    wy = 1.5 * s
    xx = x0 + 1.0
    while xx + 1.4 < x1:
        yy = 1.2
        while yy + 1.5 < height:
            a = cam.project(xx, z, yy + 1.5)
            c = window_color
            if lit is not None and rng.random() < lit:
                c = (235, 215, 140)
            cv2.rectangle(img, ipt(a), ipt((a[0] + wx, a[1] + wy)), tuple(int(v) for v in c), -1)
            yy += step_y
        xx += step_x


def lamp_post(img, cam: Camera, x: float, z: float, height: float = 5.0, color=(60, 60, 64)) -> None:
    s = cam.scale(z)
    t = max(1, int(round(0.15 * s)))
    cv2.line(img, ipt(cam.project(x, z)), ipt(cam.project(x, z, height)), color, t, cv2.LINE_AA)
    cv2.circle(img, ipt(cam.project(x, z, height)), max(1, int(0.3 * s)), (200, 200, 190), -1, cv2.LINE_AA)


def radial_light(lightmap: np.ndarray, cam: Camera, x: float, z: float, radius_m: float, strength: float) -> None:
    """Add a pool of light on the ground around (x, z) to a float lightmap (in place)."""
    cx, cy = cam.project(x, z)
    s = cam.scale(z)
    rx, ry = radius_m * s, radius_m * s * cam.height_m / max(z, 1.0) + 0.35 * radius_m * s
    h, w = lightmap.shape
    x0, x1 = int(max(0, cx - 2 * rx)), int(min(w, cx + 2 * rx + 1))
    y0, y1 = int(max(0, cy - 2 * ry - 2 * s)), int(min(h, cy + 2 * ry + 1))
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d2 = ((xx - cx) / max(rx, 1.0)) ** 2 + ((yy - cy) / max(ry, 1.0)) ** 2
    lightmap[y0:y1, x0:x1] += strength * np.exp(-d2)
