"""Plotly figures: camera sparklines, the event score timeline, and the mask canvas."""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go

FUSED, SEM, PRED, OBJ, THRESH = "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f"


def sparkline(times: list[datetime], values: list[float], *, threshold: float | None = None,
              height: int = 70) -> go.Figure:
    fig = go.Figure(go.Scatter(x=times, y=values, mode="lines", line={"color": FUSED, "width": 1.5},
                               hovertemplate="%{x|%H:%M:%S} %{y:.2f}<extra></extra>"))
    if threshold is not None:
        fig.add_hline(y=threshold, line={"color": THRESH, "width": 1, "dash": "dot"})
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0}, showlegend=False,
                      xaxis={"visible": False}, yaxis={"visible": False, "range": [0, 1]})
    return fig


def score_timeline(scores: list[dict], *, threshold: float | None, event_start: datetime | None = None,
                   event_end: datetime | None = None, height: int = 320) -> go.Figure:
    """Segment scores (``t_start``, ``t_end``, ``score``, ``s_sem``, ``s_pred``, ``s_obj``) as one step
    curve per stream that has values, the threshold as a dashed line and the event's span shaded."""
    # a segment's score holds over [t_start, t_end): steps, closed by the last segment's end
    t = [s["t_start"] for s in scores]
    last_end = scores[-1].get("t_end") if scores else None
    if last_end is not None:
        t = [*t, last_end]
    fig = go.Figure()
    for key, name, color, width in (("s_sem", "semantic", SEM, 1.5), ("s_pred", "predictive", PRED, 1.5),
                                    ("s_obj", "objects", OBJ, 1.5), ("score", "fused", FUSED, 2.5)):
        y = [s.get(key) for s in scores]
        if key != "score" and all(v is None for v in y):
            continue  # a stream this camera does not run
        if last_end is not None:
            y = [*y, y[-1]]
        fig.add_trace(go.Scatter(x=t, y=y, name=name, mode="lines", line={"color": color, "width": width,
                                 "shape": "hv"}, connectgaps=False))
    if threshold is not None:
        fig.add_hline(y=threshold, line={"color": THRESH, "dash": "dash"}, annotation_text=f"threshold {threshold:.2f}",
                      annotation_position="top left")
    if event_start is not None and event_end is not None:
        fig.add_vrect(x0=event_start, x1=event_end, fillcolor=FUSED, opacity=0.08, line_width=0)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis={"range": [0, 1.02],
                      "title": "score"}, legend={"orientation": "h", "y": 1.12}, hovermode="x unified")
    return fig


def peak_bars(event: dict, *, threshold: float | None) -> go.Figure:
    """Fallback when no timeline is available: each stream's score at the event's peak."""
    names = ["semantic", "predictive", "objects", "fused"]
    vals = [event.get("peak_s_sem"), event.get("peak_s_pred"), event.get("peak_s_obj"), event.get("peak_score")]
    fig = go.Figure(go.Bar(x=names, y=[v if v is not None else 0 for v in vals], marker_color=[SEM, PRED, OBJ, FUSED],
                           text=[f"{v:.2f}" if v is not None else "n/a" for v in vals], textposition="outside"))
    if threshold is not None:
        fig.add_hline(y=threshold, line={"color": THRESH, "dash": "dash"})
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 20, "b": 10}, yaxis={"range": [0, 1.1]})
    return fig


MASK_FILL, DRAWN_LINE = "rgba(214, 39, 40, 0.35)", "#ff7f0e"
GRID_STEPS = 41  # invisible points over the frame: Plotly reports a lasso or box only over selectable points


def mask_canvas(jpeg: bytes | None, masks: list[dict], *, zones: list[dict] | None = None,
                drawn: list[list[float]] | None = None, aspect: float = 4 / 3, height: int = 420) -> go.Figure:
    """A camera frame in fractions of its width and height (y down, as in the image), its masks
    filled red, its zones outlined blue, a just-drawn polygon outlined orange; lasso (default)
    or box select draws."""
    import base64

    import numpy as np

    fig = go.Figure()
    if jpeg:
        import cv2

        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is not None:
            h, w = img.shape[:2]
            aspect = w / h
            fig.add_trace(go.Image(source="data:image/jpeg;base64," + base64.b64encode(jpeg).decode(),
                                   x0=0, y0=0, dx=1 / w, dy=1 / h, hoverinfo="skip"))
    g = np.linspace(0, 1, GRID_STEPS)
    gx, gy = np.meshgrid(g, g)
    fig.add_trace(go.Scatter(x=gx.ravel(), y=gy.ravel(), mode="markers", marker={"opacity": 0, "size": 4},
                             hoverinfo="skip", showlegend=False, name="grid"))
    for m in masks:
        xs, ys = zip(*m["polygon"])
        fig.add_trace(go.Scatter(x=[*xs, xs[0]], y=[*ys, ys[0]], fill="toself", fillcolor=MASK_FILL, mode="lines",
                                 line={"color": FUSED, "width": 1}, name=m.get("name", "mask"),
                                 hovertemplate=f"{m.get('name', 'mask')}<extra></extra>"))
    for z in zones or []:
        xs, ys = zip(*z["polygon"])
        fig.add_trace(go.Scatter(x=[*xs, xs[0]], y=[*ys, ys[0]], fill="toself", fillcolor="rgba(31, 119, 180, 0.12)",
                                 mode="lines+text", line={"color": SEM, "width": 2}, name=f"zone {z['name']}",
                                 text=[z["name"]] + [""] * len(xs), textposition="top right",
                                 hovertemplate=f"zone {z['name']}<extra></extra>"))
    if drawn:
        xs, ys = zip(*drawn)
        fig.add_trace(go.Scatter(x=[*xs, xs[0]], y=[*ys, ys[0]], mode="lines", name="drawn",
                                 line={"color": DRAWN_LINE, "width": 2, "dash": "dash"}))
    fig.update_layout(height=height, width=int(height * aspect), margin={"l": 0, "r": 0, "t": 0, "b": 0},
                      dragmode="lasso", showlegend=False,
                      xaxis={"range": [0, 1], "visible": False, "constrain": "domain"},
                      yaxis={"range": [1, 0], "visible": False, "scaleanchor": "x", "scaleratio": 1 / aspect})
    return fig


def polygon_from_selection(selection: dict | None, max_points: int = 60) -> list[list[float]] | None:
    """The polygon a lasso or box selection on :func:`mask_canvas` describes, in fractions of
    the frame (at most ``max_points`` corners), or None when nothing was drawn."""
    if not selection:
        return None
    lasso, box = selection.get("lasso") or [], selection.get("box") or []
    if lasso:
        xs, ys = list(lasso[-1].get("x") or []), list(lasso[-1].get("y") or [])
        pts = list(zip(xs, ys))
        if len(pts) > max_points:
            step = len(pts) / max_points
            pts = [pts[int(i * step)] for i in range(max_points)]
    elif box:
        (x0, x1), (y0, y1) = box[-1]["x"], box[-1]["y"]
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    else:
        return None
    pts = [[round(min(1.0, max(0.0, float(x))), 4), round(min(1.0, max(0.0, float(y))), 4)] for x, y in pts]
    return pts if len(pts) >= 3 else None
