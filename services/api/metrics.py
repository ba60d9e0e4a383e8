"""Prometheus metrics of the API, in a registry owned by the app (several apps can live in
one process, as in tests, without clashing on the global registry)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vigil_api_requests_total", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "vigil_api_request_seconds", "request latency by route template",
            ["route", "method"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class MetricsMiddleware:
    """Counts requests by *route template* (``/events/{event_id}``), never the raw path, so
    hostile paths cannot blow up the label set."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def send_wrapper(message):  # noqa: ANN001, ANN202
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status_code)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)
