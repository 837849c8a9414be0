"""Prometheus metrics of ``vidx serve`` (``GET /metrics``).

Request counts and latencies are recorded by an ASGI middleware, labelled by
route template (never the raw path, whose ids would explode the series).
Queue depth and the embedding figures are read when scraped: from Redis and
from ``pipeline.store.stats`` (the same numbers as ``vidx stats``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import store
from pipeline.core.config import Settings
from pipeline.core.errors import TransientError, first_line
from pipeline.core.log import get_logger
from worker.api.db import Database
from worker.broker import ping_broker

log = get_logger("vidx.api")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _StoreCollector(Collector):
    """Queue depth and embedding coverage/failure/timeout rates, read at scrape time."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = _queue_depth(self._settings)
        if depth is not None:
            yield GaugeMetricFamily("vidx_queue_depth", "Indexing tasks waiting in the broker queue.", value=depth)
        try:
            with self._db.connection() as conn:
                figures = store.stats(conn)
        except Exception as exc:  # noqa: BLE001 -- a scrape must not fail because the database is down
            log.warning("metrics_stats_unavailable", error=first_line(exc))
            return
        overall = figures["overall"]
        for name, key, doc in (
            ("vidx_scenes", "scenes", "Scenes in the database."),
            ("vidx_embedding_coverage_ratio", "embedded_share", "Share of scenes with an embedding."),
            ("vidx_embedding_failure_ratio", "failure_rate", "Share of scenes whose embedding failed."),
            ("vidx_embedding_timeout_ratio", "timeout_rate", "Share of scenes whose embedding timed out."),
        ):
            yield GaugeMetricFamily(name, doc, value=float(overall[key] or 0))
        videos = GaugeMetricFamily("vidx_videos", "Videos by status.", labels=["status"])
        for status, count in figures["videos"].items():
            videos.add_metric([status], float(count))
        yield videos


def _queue_depth(settings: Settings) -> int | None:
    try:
        return ping_broker(settings, timeout_s=0.5)
    except TransientError:  # no broker: the gauge is simply absent
        return None


class ApiMetrics:
    """This app's registry (its own, so several apps in one process never collide)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vidx_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "vidx_http_request_duration_seconds", "HTTP request latency.", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.search_latency = Histogram(
            "vidx_search_duration_seconds", "Search latency inside the API (encode + SQL), by kind.", ["kind"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.registry.register(_StoreCollector(settings, db))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request task or body copy)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            # The access log: route template and key id, never the raw path's query or the key.
            key_id = (scope.get("state") or {}).get("key_id")
            log.info("http_request", method=method, route=template, status=status["code"],
                     ms=round(elapsed * 1000, 2), key_id=str(key_id) if key_id else None)
