"""Which channels an event message goes to: the configured rules, evaluated in order.

A rule matches on camera, zone, kind, severity and peak score; in its quiet hours a match is
recorded as suppressed (visible in the API) instead of sent. A channel named by several
matching rules gets the message once, from the first rule that is not quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from vigil.config import SEVERITIES, NotifyRule
from vigil.contracts import EventMessage


@dataclass(frozen=True)
class Route:
    rule: str
    channel: str
    suppressed: bool  # matched during the rule's quiet hours


def _hhmm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def in_quiet_hours(rule: NotifyRule, now: datetime) -> bool:
    """Whether ``now`` (aware) falls in the rule's quiet hours, read in the rule's timezone."""
    if not rule.quiet_hours:
        return False
    start, end = (_hhmm(x) for x in rule.quiet_hours.split("-"))
    local = now.astimezone(ZoneInfo(rule.timezone)).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # wraps midnight


def matches(rule: NotifyRule, msg: EventMessage) -> bool:
    if rule.cameras and msg.camera_id not in rule.cameras:
        return False
    if rule.zones and (msg.zone or "-") not in rule.zones:
        return False
    if msg.kind not in rule.kinds:
        return False
    if rule.min_score is not None and msg.peak_score < rule.min_score:
        return False
    if rule.min_severity is not None:
        # a message without a severity (an older producer's) passes only a rule without one
        if msg.severity not in SEVERITIES or SEVERITIES.index(msg.severity) < SEVERITIES.index(rule.min_severity):
            return False
    return True


def route(rules: list[NotifyRule], msg: EventMessage, now: datetime) -> list[Route]:
    chosen: dict[str, Route] = {}
    for rule in rules:
        if not matches(rule, msg):
            continue
        quiet = in_quiet_hours(rule, now)
        for ch in rule.channels:
            if ch not in chosen or (chosen[ch].suppressed and not quiet):
                chosen[ch] = Route(rule.name, ch, quiet)
    return list(chosen.values())
