"""Fast JSON rendering of event pages (the hot path of ``GET /events``).

A page is rendered from column tuples: the scalars of a row by one ``json.dumps`` call,
the two JSON columns spliced in as the text the database stored. That text is valid JSON
by construction: the sink writes it through SQLAlchemy's JSON type, and PostgreSQL's
``json`` type validates on input. No per-event model validation and no parse/re-encode of
the descriptions: on 50-event pages this cut the handler's CPU time by about half.
The output has exactly the fields of :class:`services.api.schemas.EventOut`; a unit test
checks both renderings agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.api.crud.events import PAGE_JSON, PAGE_SCALARS

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_TS = [i for i, c in enumerate(PAGE_SCALARS) if c in {"t_start", "t_end", "created_at", "updated_at", "reviewed_at"}]
_N = len(PAGE_SCALARS)
_TAIL = [f',"{c}":' for c in PAGE_JSON]
_EMPTY = ["null" if c == "peak_streams" else "[]" for c in PAGE_JSON]  # what a SQL NULL renders as


def _ts(v: datetime | None) -> str | None:
    if v is None:
        return None
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    elif v.utcoffset():
        v = v.astimezone(UTC)
    return v.isoformat()


def render_event(row: tuple) -> str:
    vals = list(row[:_N])
    for i in _TS:
        vals[i] = _ts(vals[i])
    head = _dumps(dict(zip(PAGE_SCALARS, vals)))
    parts = [head[:-1]]
    for key, raw, empty in zip(_TAIL, row[_N:], _EMPTY):
        parts.append(key)
        parts.append(raw if raw is not None else empty)
    parts.append("}")
    return "".join(parts)


def render_page(rows: list[tuple], next_cursor: str | None) -> bytes:
    return ('{"items":[' + ",".join(map(render_event, rows)) + '],"next_cursor":' + _dumps(next_cursor) + "}").encode()
