"""The production entry of the web app: ``gunicorn 'flaskapp.wsgi:build()'``.

``build()`` configures logging (``LOG_FORMAT`` text or json, ``LOG_LEVEL``; secrets redacted,
see ``demand_response.logs``) and returns ``create_app()`` (which serves the operations views
``/metrics`` and ``/healthz`` of ``flaskapp/ops.py``). ``run_flask.sh`` and
``deploy/dr-web.service`` start it through ``deploy/gunicorn.conf.py``.
"""

from __future__ import annotations

import logging
import os

from flask import Flask


def build() -> Flask:
    """Logging, then the app (what each gunicorn worker serves)."""
    from demand_response import logs
    from demand_response.config import ConfigError, load_settings

    from . import create_app

    try:  # LOG_FORMAT / LOG_LEVEL from .env too; a bad .env is reported by the app's pages
        settings = load_settings()
        level, kind = settings.log_level, settings.get("LOG_FORMAT")
    except ConfigError:
        level, kind = os.environ.get("LOG_LEVEL") or "INFO", None
    try:
        logs.configure(level, kind)
    except ConfigError as exc:
        logs.configure(level, "text")
        logging.getLogger("flaskapp").error("%s; writing text lines", exc)
    return create_app()
