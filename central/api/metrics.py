"""Prometheus metrics: request counts and latencies, Fleet traffic, workstations, SuperLink state."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from central.db.models import EnrollmentToken, Workstation, utcnow


class ServiceMetrics:
    """One registry per service instance (tests start several in a process)."""

    def __init__(self, ctx) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fedxray_http_requests", "HTTP requests served", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "fedxray_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.fleet_requests = Counter(
            "fedxray_fleet_requests", "Fleet API calls forwarded to the SuperLink", ["rpc", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_StateCollector(ctx))


class _StateCollector:
    """Gauges read at scrape time from the store and the last SuperLink poll."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def describe(self):
        return []

    def collect(self):
        ctx = self.ctx
        up = GaugeMetricFamily("fedxray_superlink_up", "1 when the SuperLink answered the last check")
        up.add_metric([], 1.0 if ctx.superlink.up else 0.0)
        yield up
        online = GaugeMetricFamily("fedxray_workstations_online", "Workstations connected to the SuperLink")
        online.add_metric([], float(sum(1 for n in ctx.superlink.nodes.values() if n.status == "online")))
        yield online
        ws = GaugeMetricFamily("fedxray_workstations", "Enrolled workstations by status", labels=["status"])
        tokens = GaugeMetricFamily("fedxray_enrollment_tokens", "Enrolment tokens by state", labels=["state"])
        with ctx.sessions() as session:
            counts = dict(session.execute(select(Workstation.status, func.count()).group_by(Workstation.status)).all())
            now = utcnow()
            used = session.scalar(select(func.count()).where(EnrollmentToken.used_at.is_not(None)))
            revoked = session.scalar(
                select(func.count()).where(EnrollmentToken.used_at.is_(None), EnrollmentToken.revoked_at.is_not(None))
            )
            active = session.scalar(
                select(func.count()).where(
                    EnrollmentToken.used_at.is_(None),
                    EnrollmentToken.revoked_at.is_(None),
                    EnrollmentToken.expires_at > now,
                )
            )
            total = session.scalar(select(func.count()).select_from(EnrollmentToken))
        for status in ("active", "revoked", "left"):
            ws.add_metric([status], float(counts.get(status, 0)))
        yield ws
        for state, value in (("active", active), ("used", used), ("revoked", revoked),
                             ("expired", total - active - used - revoked)):  # fmt: skip
            tokens.add_metric([state], float(value))
        yield tokens


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never by raw path: ids stay out of labels)."""

    def __init__(self, app, *, metrics_getter) -> None:
        self.app = app
        self.metrics_getter = metrics_getter

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics = self.metrics_getter()
            if metrics is not None:
                metrics.requests.labels(scope["method"], template, str(status["code"])).inc()
                metrics.latency.labels(template).observe(time.perf_counter() - start)
