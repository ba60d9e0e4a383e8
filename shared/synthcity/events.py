"""Staged behaviours (anomalies, and cycling, whose normality depends on the scene).

An event writes scripts for its agents when it begins and, every frame, says whether it
is *active* — the frames a human annotator would mark: a person from the moment of the
fall until they are up again, a fight while it lasts, a bag once its owner has walked
away until it is picked up, a vehicle or a runner while in view, and so on.
"""

from __future__ import annotations

import numpy as np

from . import agents as A

PHRASES: dict[str, tuple[str, ...]] = {
    "running": ("a person is running fast across the {zone}", "someone sprints across the {zone}", "a man runs quickly through the {zone}", "a running person"),
    "falling": ("a person has fallen and lies on the ground", "someone falls down on the {zone}", "a person collapses and lies on the floor", "a fallen person on the ground"),
    "fighting": ("two people are fighting", "a fight between two people on the {zone}", "two men punch and shove each other", "people fighting"),
    "loitering": ("a person loiters, pacing back and forth", "someone lingers in one spot for a long time", "a loitering person walks back and forth", "a person hanging around aimlessly"),
    "crowd_gathering": ("a crowd gathers on the {zone}", "many people gather in a group", "a large crowd forms in one place", "a group of people crowding together"),
    "wrong_way_vehicle": ("a car drives the wrong way against traffic", "a vehicle going the wrong direction in the lane", "a wrong-way driver on the road"),
    "vehicle_off_road": ("a car drives on the {zone}", "a vehicle drives through the pedestrian {zone}", "a car where cars are not allowed"),
    "cycling": ("a person rides a bicycle on the {zone}", "a cyclist rides through the pedestrian {zone}", "someone cycling on the {zone}"),
    "fire": ("a fire with flames and smoke", "something is burning and smoke rises", "flames and thick smoke on the {zone}"),
    "abandoned_object": ("an unattended bag left on the ground", "an abandoned suitcase on the {zone}", "someone left a bag behind and walked away"),
}

NORMAL_CYCLING = ("a cyclist rides along the road", "a person rides a bicycle on the road", "a cyclist in the bike lane")


class Event:
    type = ""

    def __init__(self, world, rng: np.random.Generator):
        self.world, self.rng = world, rng
        self.layout = world.layout
        self.active = False
        self.done = False
        self.agents: list[A.Agent] = []
        self.abnormal = True  # False: staged but normal here (cycling on a street)
        zone = world.layout.rule.zone_noun
        ph = PHRASES[self.type]
        self.phrase = ph[int(rng.integers(len(ph)))].format(zone=zone)

    def add(self, a: A.Agent) -> A.Agent:
        a.activity = "event"
        self.agents.append(a)
        self.world.add(a)
        return a

    def set_active(self, value: bool):
        def fn(_agent):
            self.active = value

        return fn

    def begin(self) -> None:
        raise NotImplementedError

    def update(self) -> None:
        if all(not a.alive for a in self.agents):
            self.done, self.active = True, False

    def _in_view(self, a: A.Agent) -> bool:
        return a.alive and self.world.cam.in_view(a.x, a.z, 0.3)


class Running(Event):
    type = "running"

    def begin(self):
        rng = self.rng
        (x0, z0), (x1, z1) = self.layout.walker_path(rng)
        p = self.add(A.new_person(rng, x0, z0))
        self.p = p.go(x1, z1, float(rng.uniform(3.8, 5.5)), "run").vanish()

    def update(self):
        self.active = self._in_view(self.p)
        super().update()


class Falling(Event):
    type = "falling"

    def begin(self):
        rng, fps = self.rng, self.world.fps
        x, z = self.layout.spot(rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        p = self.add(A.new_person(rng, self.layout.offscreen_x(z, -side), z))
        p.go(x, z, float(rng.uniform(1.1, 1.5))).call(self.set_active(True))
        p.stay(int(0.6 * fps), "fall").stay(int(rng.uniform(5, 10) * fps), "lie").stay(int(1.5 * fps), "getup")
        p.call(self.set_active(False)).go(self.layout.offscreen_x(z, side), z, 1.0).vanish()


class Fighting(Event):
    type = "fighting"

    def begin(self):
        rng, fps = self.rng, self.world.fps
        x, z = self.layout.spot(rng)
        n_frames = int(rng.uniform(5, 10) * fps)
        ps = []
        for side in (-1.0, 1.0):
            p = self.add(A.new_person(rng, self.layout.offscreen_x(z, side), z))
            ps.append(p)
        d = [abs(p.x - (x + side * 0.35)) for p, side in zip(ps, (-1.0, 1.0))]
        t = max(d) / 1.4
        for p, side, di in zip(ps, (-1.0, 1.0), d):
            p.go(x + side * 0.35, z, di / t)
        ps[0].call(self.set_active(True))
        for p, side in zip(ps, (-1.0, 1.0)):
            p.stay(n_frames, "fight", face=(-side, 0.0))
        ps[0].call(self.set_active(False))
        for p, side in zip(ps, (-1.0, 1.0)):
            p.go(self.layout.offscreen_x(z, side), z, float(rng.uniform(1.3, 1.8))).vanish()


class Loitering(Event):
    type = "loitering"

    def begin(self):
        rng, fps = self.rng, self.world.fps
        x, z = self.layout.spot(rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        p = self.add(A.new_person(rng, self.layout.offscreen_x(z, -side), z))
        p.go(x, z, 1.2).stay(int(2 * fps), "stand").call(self.set_active(True))
        total = rng.uniform(12, 22) * fps
        t = 0
        while t < total:
            tx = x + rng.uniform(-2.5, 2.5)
            tz = z + rng.uniform(-0.8, 0.8)
            sp = float(rng.uniform(0.5, 0.8))
            p.go(tx, tz, sp)
            st = int(rng.uniform(1, 3) * fps)
            p.stay(st, "stand")
            t += st + abs(tx - x) / sp * fps
        p.call(self.set_active(False)).go(self.layout.offscreen_x(z, side), z, 1.3).vanish()


class CrowdGathering(Event):
    type = "crowd_gathering"

    def begin(self):
        rng, fps = self.rng, self.world.fps
        x, z = self.layout.spot(rng, margin=0.45)
        self.n = int(rng.integers(9, 15))
        self.arrived = 0
        self.hold = int(rng.uniform(8, 14) * fps)
        self.t = 0
        self.dispersed = False
        z0, z1 = self.layout.walk_z()
        for i in range(self.n):
            ang = rng.uniform(0, 2 * np.pi)
            r = rng.uniform(0.5, 2.5)
            tx, tz = x + r * np.cos(ang), float(np.clip(z + 0.6 * r * np.sin(ang), z0, z1))
            sz = float(np.clip(tz + rng.normal(0, 2), z0, z1))
            side = 1.0 if rng.random() < 0.5 else -1.0
            p = self.add(A.new_person(rng, self.layout.offscreen_x(sz, side), sz))
            p.go(tx, tz, float(rng.uniform(1.2, 1.8))).call(self._arrive).stay(10**6, "stand", face=((x - tx), (z - tz)) if r > 0.1 else None)

    def _arrive(self, _a):
        self.arrived += 1

    def update(self):
        if not self.dispersed:
            if self.arrived >= min(6, self.n):
                self.active = True
                self.t += 1
                if self.t >= self.hold:
                    self.dispersed, self.active = True, False
                    for p in self.agents:
                        p.actions.clear()
                        side = 1.0 if self.rng.random() < 0.5 else -1.0
                        p.go(self.layout.offscreen_x(p.z, side), p.z, float(self.rng.uniform(1.1, 1.6))).vanish()
        super().update()


class WrongWay(Event):
    type = "wrong_way_vehicle"

    def begin(self):
        lane = int(self.rng.integers(2))
        car = self.layout._car(self.world, lane, wrong=True)
        self.world.agents.remove(car)
        self.car = self.add(car)
        self.car.activity = "event"

    def update(self):
        self.active = self._in_view(self.car)
        super().update()


class OffRoad(Event):
    type = "vehicle_off_road"

    def begin(self):
        rng = self.rng
        (x0, z0), (x1, z1) = self.layout.off_road_path(rng)
        car = self.add(A.new_car(rng, x0, z0))
        self.car = car.go(x1, z1, float(rng.uniform(3.5, 7.0)), "drive").vanish()

    def update(self):
        self.active = self._in_view(self.car)
        super().update()


class Cycling(Event):
    type = "cycling"

    def begin(self):
        rng = self.rng
        lay = self.layout
        if lay.rule.cycling_normal:
            self.abnormal = False
            self.phrase = NORMAL_CYCLING[int(rng.integers(len(NORMAL_CYCLING)))]
            if hasattr(lay, "road"):
                lane = int(rng.integers(2))
                z = lay.road[0] + 0.7 if lane == 0 else lay.road[1] - 0.7
                d = 1.0 if lane == 0 else -1.0
                (x0, z0), (x1, z1) = (lay.offscreen_x(z, -d), z), (lay.offscreen_x(z, d), z)
            else:
                (x0, z0), (x1, z1) = lay.walker_path(rng)
        else:
            (x0, z0), (x1, z1) = lay.walker_path(rng)
        c = self.add(A.new_cyclist(rng, x0, z0))
        self.c = c.go(x1, z1, float(rng.uniform(3.5, 5.5)), "cycle").vanish()

    def update(self):
        self.active = self._in_view(self.c)
        super().update()


class Fire(Event):
    type = "fire"

    def begin(self):
        rng, fps = self.rng, self.world.fps
        x, z = self.layout.spot(rng)
        self.f = self.add(A.Agent("fire", x, z))
        self.ramp, self.hold, self.fade = int(2 * fps), int(rng.uniform(10, 18) * fps), int(3 * fps)
        self.t = 0

    def update(self):
        self.t += 1
        t, f = self.t, self.f
        if t < self.ramp:
            f.intensity = t / self.ramp
        elif t < self.ramp + self.hold:
            f.intensity = 1.0
        elif t < self.ramp + self.hold + self.fade:
            f.intensity = 1.0 - (t - self.ramp - self.hold) / self.fade
        else:
            f.intensity = 0.0
            if not f.smoke:
                f.alive = False
        f.phase += 0.9
        self.active = f.intensity > 0.15
        super().update()


class Abandoned(Event):
    type = "abandoned_object"

    def begin(self):
        rng, fps = self.rng, self.world.fps
        x, z = self.layout.spot(rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        self.bag = None
        self.owner = self.add(A.new_person(rng, self.layout.offscreen_x(z, -side), z))
        self.owner.carry = True
        self.owner.go(x, z, 1.2).stay(int(1.5 * fps), "stand").call(self._drop)
        self.owner.go(self.layout.offscreen_x(z + 0.5, side), z + 0.5, 1.4).vanish()
        self.hold = int(rng.uniform(10, 18) * fps)
        self.t = 0
        self.collector = None
        self.bag_color = tuple(int(c) for c in rng.choice([(40, 35, 30), (90, 30, 30), (30, 50, 90), (60, 60, 60)]))

    def _drop(self, owner):
        owner.carry = False
        self.bag = self.add(A.Agent("bag", owner.x + owner.hx * 0.4, owner.z + 0.2, rng_colors=(self.bag_color,)))

    def _pickup(self, person):
        if self.bag is not None:
            self.bag.alive = False
        person.carry = True
        self.active = False

    def update(self):
        if self.bag is not None and self.bag.alive:
            far = (not self.owner.alive) or abs(self.owner.x - self.bag.x) > 3.0
            if far:
                self.active = True
                self.t += 1
                if self.t == self.hold:
                    rng = self.rng
                    side = 1.0 if rng.random() < 0.5 else -1.0
                    b = self.bag
                    c = self.add(A.new_person(rng, self.layout.offscreen_x(b.z, side), b.z, uniform=(30, 60, 110)))
                    c.go(b.x + side * 0.4, b.z, 1.5).stay(int(self.world.fps), "stand").call(self._pickup)
                    c.go(self.layout.offscreen_x(b.z, -side), b.z, 1.4).vanish()
        super().update()


EVENTS: dict[str, type[Event]] = {c.type: c for c in (Running, Falling, Fighting, Loitering, CrowdGathering, WrongWay, OffRoad, Cycling, Fire, Abandoned)}
