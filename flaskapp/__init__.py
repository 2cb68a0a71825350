"""The demand-response web front end: a consumer console and a utility dashboard.

``create_app(config)`` builds the app; ``flask --app flaskapp run`` and ``./run_flask.sh``
start it on 127.0.0.1. Configuration comes from ``.env`` and the environment (the keys
``dr`` reads, see ``.env.template``) with ``config`` on top; docs/web.md lists the web-only
keys (``DR_ROLE``, ``DR_PRICE_UNIT``, ``FLASK_SECRET_KEY`` …).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any, Mapping

from flask import Flask, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from .daemon import DaemonManager
from .services import USER_ERRORS, Gateway, RoleDisabled, one_line
from .units import fmt_eth, fmt_kw, short_hex

csrf = CSRFProtect()
log = logging.getLogger("flaskapp")


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask application. ``config`` overrides Flask settings and any ``.env`` key."""
    app = Flask(__name__)
    config = dict(config or {})
    secret = config.pop("SECRET_KEY", None) or os.environ.get("FLASK_SECRET_KEY")
    if not secret:
        # A per-process key: forms keep working, sessions end when the server restarts.
        secret = secrets.token_hex(32)
    app.config.update(
        SECRET_KEY=secret,
        WTF_CSRF_TIME_LIMIT=None,  # a console left open all day must still submit
        MAX_CONTENT_LENGTH=1 << 20,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        JSON_SORT_KEYS=False,
    )
    gateway = Gateway(config)
    # Browsers share cookies between ports of one host: a consumer console and a utility
    # dashboard on the same machine must not overwrite each other's session (CSRF) cookie.
    app.config["SESSION_COOKIE_NAME"] = f"dr_{gateway.role}_session"
    app.config.update(config)
    app.extensions["dr"] = gateway
    app.extensions["dr_daemon"] = DaemonManager()
    csrf.init_app(app)

    from .api import bp as api_bp
    from .consumer import bp as consumer_bp
    from .utility import bp as utility_bp

    app.register_blueprint(consumer_bp)
    app.register_blueprint(utility_bp)
    app.register_blueprint(api_bp)

    app.jinja_env.filters.update(kw=fmt_kw, eth=fmt_eth, short=short_hex, price=lambda wei: gateway.unit.format(wei))
    app.jinja_env.filters["hms"] = lambda ts: time.strftime("%H:%M:%S", time.localtime(int(ts))) if ts else "—"
    app.jinja_env.filters["when"] = lambda ts: time.strftime("%d %b %H:%M:%S", time.localtime(int(ts))) if ts else "—"

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"gw": gateway, "unit": gateway.unit, "refresh_ms": gateway.refresh_ms,
                "now_ts": lambda: int(time.time())}

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/")
    def index() -> Any:
        if gateway.consumer_enabled:
            return redirect(url_for("consumer.console"))
        return redirect(url_for("utility.dashboard"))

    def _error(status: int, title: str, message: str) -> Any:
        if _wants_json():
            return jsonify({"error": message, "status": status}), status
        return render_template("error.html", title=title, message=message, status=status), status

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Any:
        return _error(400, "Form expired",
                      "The form was missing its security token or it had expired. Reload the page and submit again.")

    @app.errorhandler(RoleDisabled)
    def _role(exc: RoleDisabled) -> Any:
        return _error(403, "Not available", str(exc))

    @app.errorhandler(404)
    def _not_found(exc: Any) -> Any:
        return _error(404, "Not found", "There is no page at this address.")

    @app.errorhandler(405)
    def _method(exc: Any) -> Any:
        return _error(405, "Not allowed", "This address does not accept that kind of request.")

    @app.errorhandler(413)
    def _too_large(exc: Any) -> Any:
        return _error(413, "Too large", "The request is larger than 1 MiB.")

    @app.errorhandler(400)
    def _bad_request(exc: Any) -> Any:
        return _error(400, "Bad request", getattr(exc, "description", None) or "The request could not be understood.")

    for error_type in USER_ERRORS:
        @app.errorhandler(error_type)
        def _user_error(exc: Exception) -> Any:
            return _error(503 if "reach" in str(exc) or "not answering" in str(exc) else 409,
                          "Problem", one_line(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return _error(exc.code or 500, exc.name, exc.description or exc.name)
        from .services import is_connection_problem

        if is_connection_problem(exc):
            gateway.drop_session()
            return _error(503, "Chain unavailable",
                          "The chain stopped answering. Check that the node is running; this page retries on reload.")
        log.exception("unexpected error on %s", request.path)
        return _error(500, "Something went wrong",
                      f"An unexpected {type(exc).__name__} happened; the server log has the details.")

    return app
