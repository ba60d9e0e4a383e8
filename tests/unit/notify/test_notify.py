"""Rules, signatures and the notifier's bookkeeping (dedupe, order, backoff, dead letters)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from services.notify.channels import DeliveryError, notification_body, sign, verify_signature
from services.notify.notifier import Notifier
from services.notify.rules import in_quiet_hours, route
from vigil.config import ConfigError, NotifyRule, NotifySettings, load_settings
from vigil.contracts import EventMessage
from vigil.db import make_engine, migrate
from vigil.models import Delivery

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def msg(eid: str = "ev:cam.1.000001", version: int = 1, kind: str = "new", camera: str = "cam", zone=None,
        severity: str = "high", score: float = 0.9) -> EventMessage:
    return EventMessage(event_id=eid, kind=kind, camera_id=camera, zone=zone, version=version, t_start=T0,
                        t_end=T0, peak_score=score, model_version="m", severity=severity,
                        top_descriptions=[{"text": f"d{i}", "prob": 0.5, "abnormal": True} for i in range(5)])


class FakeSender:
    def __init__(self, name: str, fail: int = 0) -> None:
        self.name, self.fail, self.sent, self.calls = name, fail, [], 0

    def send(self, body: bytes, *, key: str, camera_id: str) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise DeliveryError("receiver down")
        self.sent.append(key)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(seconds=2)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path):
    s = load_settings(None, state_dir=tmp_path)
    migrate(s.database_url)
    return make_engine(s.database_url)


def notifier(engine, senders, clock, **kw):
    cfg = NotifySettings(channels=[{"kind": "webhook", "name": n, "url": "http://127.0.0.1:9/"} for n in senders],
                         rules=[{"name": "all", "channels": list(senders)}], backoff_initial_s=1, backoff_max_s=4, **kw)
    return Notifier(cfg, engine, senders, clock=clock)


def rows(engine):
    with Session(engine) as db:
        return list(db.exec(select(Delivery).order_by(Delivery.id)))


def test_rules_match_camera_zone_kind_severity_score():
    r = NotifyRule(name="r", channels=["a"], cameras=["cam"], zones=["-", "door"], kinds=["new"],
                   min_severity="medium", min_score=0.5)
    assert [x.channel for x in route([r], msg(), T0)] == ["a"]
    assert route([r], msg(camera="other"), T0) == []
    assert route([r], msg(zone="yard"), T0) == []
    assert [x.channel for x in route([r], msg(zone="door"), T0)] == ["a"]
    assert route([r], msg(kind="update"), T0) == []
    assert route([r], msg(severity="low"), T0) == []
    assert route([r], msg(score=0.4), T0) == []


def test_quiet_hours_wrap_midnight_in_the_rules_timezone_and_suppress():
    r = NotifyRule(name="night", channels=["a"], quiet_hours="22:00-06:00", timezone="Europe/Berlin")
    # 12:00 UTC = 13:00 in Berlin: not quiet; 22:30 UTC = 23:30 Berlin; 04:30 UTC = 05:30 Berlin
    assert not in_quiet_hours(r, T0)
    assert in_quiet_hours(r, T0.replace(hour=22, minute=30))
    assert in_quiet_hours(r, T0.replace(hour=4, minute=30))
    assert not in_quiet_hours(r, T0.replace(hour=5, minute=0))  # 06:00 Berlin: quiet hours over
    day = NotifyRule(name="day", channels=["a"])
    # the same channel from a rule that is not quiet: sent, not suppressed
    assert [x.suppressed for x in route([r], msg(), T0.replace(hour=23))] == [True]
    assert [(x.rule, x.suppressed) for x in route([r, day], msg(), T0.replace(hour=23))] == [("day", False)]


def test_config_names_bad_channels_and_timezones():
    with pytest.raises(ConfigError, match="unknown channel"):
        load_settings(None, notify={"channels": [], "rules": [{"name": "r", "channels": ["pager"]}]})
    with pytest.raises(ConfigError, match="unknown timezone"):
        load_settings(None, notify={"rules": [{"name": "r", "channels": ["x"], "timezone": "Mars/Base"}],
                                    "channels": [{"kind": "webhook", "name": "x", "url": "http://h/"}]})
    with pytest.raises(ConfigError, match="url"):
        load_settings(None, notify={"channels": [{"kind": "webhook", "name": "x", "url": "ftp://h/"}]})


def test_signature_covers_timestamp_and_exact_bytes():
    body = notification_body(msg(), key="k", evidence_url=None)
    sig = sign("s3cret", "1000.000", body)
    assert verify_signature("s3cret", "1000.000", body, sig, now=1001)
    assert not verify_signature("s3cret", "1000.000", body + b" ", sig, now=1001)  # body changed
    assert not verify_signature("other", "1000.000", body, sig, now=1001)  # wrong key
    assert not verify_signature("s3cret", "1000.000", body, sig, now=2000)  # replayed later


def test_body_carries_event_top_descriptions_and_key():
    import json

    b = json.loads(notification_body(msg(), key="ev:x:1:hook", evidence_url="http://s3/clip"))
    assert b["idempotency_key"] == "ev:x:1:hook" and b["evidence_url"] == "http://s3/clip"
    assert [d["text"] for d in b["top_descriptions"]] == ["d0", "d1", "d2"]
    assert b["event"]["event_id"] == "ev:cam.1.000001" and b["event"]["version"] == 1


def test_a_republished_message_is_routed_once(engine):
    hook = FakeSender("hook")
    n = notifier(engine, {"hook": hook}, Clock())
    assert n.intake([msg(version=1), msg(version=2, kind="update")]) == 2
    assert n.intake([msg(version=1), msg(version=2, kind="update")]) == 0  # the relay re-published both
    n.dispatch_once()
    n.dispatch_once()
    assert hook.sent == ["ev:cam.1.000001:1:hook", "ev:cam.1.000001:2:hook"]
    assert [r.status for r in rows(engine)] == ["delivered", "delivered"]


def test_failed_delivery_backs_off_then_lands_in_order(engine):
    clock, hook = Clock(), FakeSender("hook", fail=2)
    n = notifier(engine, {"hook": hook}, clock)
    n.intake([msg(version=1), msg(version=2, kind="update"), msg(version=3, kind="end")])
    assert n.dispatch_once() == 0 and hook.calls == 1
    assert n.dispatch_once() == 0 and hook.calls == 1  # backing off: 1 s not yet passed
    clock.now += timedelta(seconds=1)
    assert n.dispatch_once() == 0 and hook.calls == 2  # second failure: next try in 2 s
    clock.now += timedelta(seconds=1)
    n.dispatch_once()
    assert hook.calls == 2
    clock.now += timedelta(seconds=1)
    for _ in range(3):
        n.dispatch_once()
    assert hook.sent == [f"ev:cam.1.000001:{v}:hook" for v in (1, 2, 3)]  # version 1 first, never overtaken
    first = rows(engine)[0]
    assert first.attempts == 3 and first.last_error == "DeliveryError: receiver down"
    assert first.latency_s == pytest.approx(5.0)  # the clock: 2 s + 3 s of backoff after the event's end


def test_budget_spent_dead_letters_and_the_next_version_moves_on(engine):
    clock, hook = Clock(), FakeSender("hook", fail=3)
    n = notifier(engine, {"hook": hook}, clock, attempts=3)
    n.intake([msg(version=1), msg(version=2, kind="update")])
    for _ in range(6):
        n.dispatch_once()
        clock.now += timedelta(seconds=5)
    st = [(r.version, r.status, r.attempts) for r in rows(engine)]
    assert st == [(1, "dead_letter", 3), (2, "delivered", 1)]
    assert hook.sent == ["ev:cam.1.000001:2:hook"]


def test_one_channel_down_does_not_hold_the_other(engine):
    clock, down, up = Clock(), FakeSender("down", fail=100), FakeSender("up")
    n = notifier(engine, {"down": down, "up": up}, clock)
    n.intake([msg(version=1)])
    n.dispatch_once()
    assert up.sent == ["ev:cam.1.000001:1:up"] and down.sent == []


def test_notify_without_channels_or_rules_refuses_to_start(tmp_path):
    from typer.testing import CliRunner

    from services.cli import app

    r = CliRunner().invoke(app, ["notify", "--state-dir", str(tmp_path)])
    assert r.exit_code == 2 and "no channels or no rules" in r.output
