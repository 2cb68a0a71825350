"""Operations views of the web app: ``/metrics`` (Prometheus) and ``/healthz`` (JSON).

Register with ``app.register_blueprint(ops.bp)`` in ``create_app``. ``/metrics`` is the
package's registry (``demand_response.metrics``): the web app's in-process daemon and its
RPC calls; with ``METRICS_TOKEN`` set it needs ``Authorization: Bearer <token>``.
``/healthz`` checks the node, the contract and any daemon running in this process
(``demand_response.health``): 200 when all is well, 503 otherwise. Both are GET only and
change no state.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from demand_response import health, metrics

bp = Blueprint("ops", __name__)


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
    status, body, content_type = metrics.exposition(request.headers.get("Accept"))
    return Response(body, status, content_type=content_type, headers={"Cache-Control": "no-store"})


@bp.get("/healthz")
def healthz() -> Any:
    """The node, the contract and this process's daemons: 200 or 503 with the report."""
    status, report = _health()()
    response = jsonify(report)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
