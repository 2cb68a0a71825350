"""The demand-response web front end: a consumer console and a utility dashboard.

``create_app(config)`` builds the app; ``flask --app flaskapp run`` and ``./run_flask.sh``
start it on 127.0.0.1. Configuration comes from ``.env`` and the environment (the keys
``dr`` reads, see ``.env.template``) with ``config`` on top; docs/web.md lists the web-only
keys (``DR_ROLE``, ``FLASK_SECRET_KEY`` …).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any, Mapping

from flask import Flask, redirect, request, url_for
from flask_wtf.csrf import CSRFProtect

from . import auth, errors
from .daemon import DaemonManager
from .live import LiveFeed
from .services import Services
from .units import fmt_kw, short_hex

csrf = CSRFProtect()

#: Headers of every reply: no sniffing, no framing, no assets or scripts from elsewhere.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask application. ``config`` overrides Flask settings and any ``.env`` key."""
    app = Flask(__name__)
    config = dict(config or {})
    services = Services.from_config(config)
    app.config.update(
        # Without a key, a per-process one: forms keep working, sessions end with the server.
        SECRET_KEY=config.pop("SECRET_KEY", None) or os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32),
        WTF_CSRF_TIME_LIMIT=None,  # a console left open all day must still submit
        MAX_CONTENT_LENGTH=1 << 20,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        # Browsers share cookies between ports of one host: a consumer console and a utility
        # dashboard on one machine must not overwrite each other's session (CSRF) cookie.
        SESSION_COOKIE_NAME=f"dr_{services.config.role}_session",
    )
    app.config.update(config)
    app.extensions["dr"] = services
    app.extensions["dr_daemon"] = DaemonManager()
    app.extensions["dr_live"] = LiveFeed(services.chain, app.extensions["dr_daemon"],
                                         interval=min(5.0, max(0.1, services.settings.poll_interval)),
                                         max_streams=services.config.live_streams)
    csrf.init_app(app)
    errors.register(app)
    auth.init_app(app)  # sign-in, roles and the CSRF check (docs/web.md)

    from .api import bp as api_bp
    from .consumer import bp as consumer_bp
    from .ops import bp as ops_bp
    from .utility import bp as utility_bp

    for blueprint in (consumer_bp, utility_bp, api_bp, ops_bp):
        app.register_blueprint(blueprint)
    if services.config.utility_enabled:
        _serve_openadr3(app)
    app.jinja_env.filters.update(kw=fmt_kw, eth=services.unit.amount, short=short_hex, price=services.unit.format,
                                 hms=_clock("%H:%M:%S"), when=_clock("%d %b %H:%M:%S"))
    app.context_processor(lambda: {"cfg": services.config, "unit": services.unit,
                                   "refresh_ms": services.config.refresh_ms, "live": services.config.live,
                                   "now_ts": lambda: int(time.time())})
    app.after_request(_headers)
    app.add_url_rule("/", "index", lambda: redirect(url_for(
        "consumer.console" if services.config.consumer_enabled else "utility.dashboard")))
    return app


def _serve_openadr3(app: Flask) -> None:
    """The OpenADR 3.0.1 VTN API (docs/openadr.md) on a utility's app, when the openadr extra is installed."""
    try:
        from . import openadr3
    except ImportError as exc:
        logging.getLogger("flaskapp").info("OpenADR 3 API not served: %s (install the 'openadr' extra)", exc)
        return
    openadr3.register(app)


def _clock(fmt: str) -> Any:
    return lambda ts: time.strftime(fmt, time.localtime(int(ts))) if ts else "—"


def _headers(response: Any) -> Any:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
