"""The production entry of the web app: ``gunicorn 'flaskapp.wsgi:build()'``.

``build()`` configures logging (``LOG_FORMAT`` text or json, ``LOG_LEVEL``; secrets redacted,
see ``demand_response.logs``) and returns ``create_app()`` with the operations views
(``/metrics``, ``/healthz``: ``flaskapp/ops.py``) registered once. ``run_flask.sh`` and
``deploy/dr-web.service`` start it through ``deploy/gunicorn.conf.py``.
"""

from __future__ import annotations

import os

from flask import Flask


def build() -> Flask:
    """Logging, then the app (what each gunicorn worker serves)."""
    from demand_response import logs

    from . import create_app, ops

    logs.configure(os.environ.get("LOG_LEVEL") or "INFO")
    app = create_app()
    if ops.bp.name not in app.blueprints:
        app.register_blueprint(ops.bp)
    return app
