"""Prometheus metrics of one app, in the app's own CollectorRegistry (tests build many apps).

Other parts of the service add their own series through the hook methods:
`metrics.add_gauge_callback(...)` for values read at scrape time (queue depths), or
`metrics.registry` for any prometheus_client collector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A `_created` series beside every counter and histogram doubles the output and no dashboard of
# ours reads it; prometheus_client's switch is process-wide, which is what we want.
disable_created_metrics()

log = logging.getLogger(__name__)

PREFIX = "simgan"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Batch-size histogram buckets: powers of two up to well past the default batch_max_size."""

GaugeValues = Mapping[tuple[str, ...], float]
"""Label values -> gauge value, e.g. {("train",): 3, ("refine",): 0}."""

CounterValues = Callable[[], Mapping[tuple[str, ...], float]]
"""Reads label values -> counter total from somewhere else (Redis, where the workers count)."""


class _CallbackGauge(Collector):
    """A gauge whose samples come from a function called at every scrape."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], read: Callable[[], GaugeValues]
    ):
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.read = read
        self._last_error = ""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        try:
            values = self.read()
            self._last_error = ""
        except Exception as exc:  # a scrape must not fail because one source is down
            if str(exc) != self._last_error:  # once per outage, not at every scrape
                log.warning("metric %s could not be read: %s", self.name, exc)
            self._last_error = str(exc)
            values = {}
        for labels, value in values.items():
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


class _CallbackCounter(Collector):
    """A counter whose totals come from functions called at every scrape (a source that fails is
    left out, so the others still show)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.sources: list[CounterValues] = []

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for read in self.sources:
            try:
                values = read()
            except Exception as exc:  # e.g. Redis down: the scrape goes on without these totals
                log.debug("counter %s could not be read: %s", self.name, exc)
                continue
            for labels, value in values.items():
                family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class Metrics:
    """Every series the service exports; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_refine_batch_size",
            "Images per model call made by the dynamic batcher.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        # Two sources: /refine (counted here) and bulk refine jobs (counted by the workers in Redis,
        # added with `add_counter_source`). Sum over `source` for every image refined.
        self._refined_here: dict[str, float] = {}
        self.images_refined = _CallbackCounter(
            f"{PREFIX}_images_refined",
            "Images refined, by model and source (request: POST /refine; job: bulk refine jobs).",
            ["model", "source"],
        )
        self.images_refined.sources.append(
            lambda: {(model, "request"): n for model, n in list(self._refined_here.items())}
        )
        self.registry.register(self.images_refined)
        self.jobs = _CallbackCounter(
            f"{PREFIX}_jobs",
            "Jobs that ended, by kind (train, refine) and outcome (succeeded, failed, canceled, "
            "interrupted: requeued to resume).",
            ["kind", "outcome"],
        )
        self.registry.register(self.jobs)
        self.active_model = Gauge(
            f"{PREFIX}_active_model",
            "1 for the model version the service serves, labelled with its execution provider and precision.",
            ["version", "provider", "precision"],
            registry=self.registry,
        )
        self.parity = Gauge(
            f"{PREFIX}_active_model_parity_grey_levels",
            "How far the serving engine's output is from onnxruntime's CPU provider in fp32 on the probe "
            "batch measured at load, in grey levels: the largest difference (max) and the mean.",
            ["version", "provider", "precision", "stat"],
            registry=self.registry,
        )

    # ------------------------------------------------------------------ hooks
    def add_gauge_callback(
        self, name: str, documentation: str, labelnames: Sequence[str], read: Callable[[], GaugeValues]
    ) -> None:
        """Export gauge `name` whose values `read()` returns at every scrape.

        `read` maps label-value tuples to numbers, e.g. queue depths:
        `metrics.add_gauge_callback("simgan_queue_depth", "Jobs waiting.", ["queue"],
        lambda: {("train",): 3.0})`. An exception in `read` is logged and leaves the gauge empty.
        """
        self.registry.register(_CallbackGauge(name, documentation, labelnames, read))

    def add_counter_source(self, counter: _CallbackCounter, read: CounterValues) -> None:
        """Add the totals `read()` returns at every scrape to `counter` (metrics.jobs or .images_refined)."""
        counter.sources.append(read)

    # ---------------------------------------------------------------- updates
    def set_active_model(
        self, version: str, provider: str, precision: str, parity: tuple[int, float] | None = None
    ) -> None:
        """`parity`: (largest, mean) difference from the CPU provider in grey levels, when measured."""
        self.active_model.clear()
        self.active_model.labels(version=version, provider=provider, precision=precision).set(1)
        self.parity.clear()
        if parity is not None:
            labels = {"version": version, "provider": provider, "precision": precision}
            for stat, value in zip(("max", "mean"), parity, strict=True):
                self.parity.labels(**labels, stat=stat).set(value)

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model=model).observe(size)
        self._refined_here[model] = self._refined_here.get(model, 0) + size

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (`/models/{version}`, not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = _template(scope)
            labels = {"route": route, "method": scope["method"], "status": str(status)}
            self.metrics.requests.labels(**labels).inc()
            self.metrics.latency.labels(**labels).observe(time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The route template that answered: FastAPI's routes put themselves in the scope; the docs
    pages, /openapi.json and mounted static files are plain Starlette routes, matched again here."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"
