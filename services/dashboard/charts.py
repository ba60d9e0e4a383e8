"""Plotly figures: camera sparklines and the event score timeline."""

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
