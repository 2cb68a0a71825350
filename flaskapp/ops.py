"""Operations views of the web app: ``/metrics`` (Prometheus) and ``/healthz`` (JSON).

Register with ``app.register_blueprint(ops.bp)`` in ``create_app``. ``/metrics`` is the
package's registry (``demand_response.metrics``): the web app's in-process daemon and its
RPC calls, plus the web app's own ``dr_web_requests_total`` (by method and status class) and
``dr_web_live_streams``; with ``METRICS_TOKEN`` set it needs ``Authorization: Bearer <token>``.
Under gunicorn with several workers, ``deploy/gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: every worker then writes its values
there and a scrape of any worker adds up all of them (counters and histograms summed, the
streams gauge summed over live workers, the daemons' gauges one series per ``pid``).
``/healthz`` checks the node, the contract and any daemon running in this process
(``demand_response.health``): 200 when all is well, 503 otherwise. Both are GET only and
change no state.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from demand_response import health, metrics

bp = Blueprint("ops", __name__)

_lock = threading.Lock()
_web: dict[str, Any] = {}


def _web_metrics() -> dict[str, Any] | None:
    """The web app's own metrics in the package's registry (None without prometheus-client)."""
    if "requests" not in _web:
        registry = metrics.registry()
        if registry is None:
            return None
        with _lock:
            if "requests" not in _web:
                from prometheus_client import Counter, Gauge

                _web["streams"] = Gauge("dr_web_live_streams", "Live-update streams (server-sent events) open",
                                        registry=registry, multiprocess_mode="livesum")
                _web["requests"] = Counter("dr_web_requests", "HTTP requests the web app answered, by method "
                                           "and status class", ["method", "status"], registry=registry)
    return _web


def live_streams_changed(delta: int) -> None:
    """A live stream opened (+1) or ended (-1)."""
    web = _web_metrics()
    if web is not None:
        web["streams"].inc(delta)


@bp.after_app_request
def _count(response: Any) -> Any:
    web = _web_metrics()
    if web is not None:
        web["requests"].labels(request.method if request.method in _METHODS else "other",
                               f"{response.status_code // 100}xx").inc()
    return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _exposition(accept: str | None) -> tuple[int, bytes, str]:
    """The package's exposition, or with ``PROMETHEUS_MULTIPROC_DIR`` every worker's values added up."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or not metrics.available():
        return metrics.exposition(accept)
    from prometheus_client import CollectorRegistry, multiprocess
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, folder)
    encoder, content_type = choose_encoder(accept or "")
    return 200, encoder(registry), content_type


def _settings() -> Any:
    """The app's settings (the gateway's), or the environment's when the app has none."""
    settings = getattr(current_app.extensions.get("dr"), "settings", None)
    if settings is None:
        from demand_response.config import load_settings

        settings = load_settings()
    return settings


def _health() -> health.HealthCheck:
    check = current_app.extensions.get("dr_health")
    if check is None:
        check = current_app.extensions["dr_health"] = health.HealthCheck.from_settings(_settings())
    return check


@bp.get("/metrics")
def scrape() -> Any:
    """The Prometheus exposition (text format, or OpenMetrics when asked)."""
    if not metrics.token_ok(request.headers.get("Authorization"), _settings().get("METRICS_TOKEN")):
        return Response("metrics need Authorization: Bearer <METRICS_TOKEN>\n", 401, mimetype="text/plain")
    status, body, content_type = _exposition(request.headers.get("Accept"))
    return Response(body, status, content_type=content_type, headers={"Cache-Control": "no-store"})


@bp.get("/healthz")
def healthz() -> Any:
    """The node, the contract and this process's daemons: 200 or 503 with the report."""
    status, report = _health()()
    response = jsonify(report)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
