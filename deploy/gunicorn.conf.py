"""gunicorn settings of the web app (``run_flask.sh``, ``deploy/dr-web.service``).

Every value comes from the environment, so one file serves both:

* ``WEB_BIND`` (default ``127.0.0.1:5000``): where to listen; keep it on loopback behind
  the reverse proxy (docs/production.md);
* ``WEB_WORKERS`` (default 1) processes of ``WEB_THREADS`` (default 8) threads each. One
  process keeps one metrics registry and the console's daemon in the process that answers;
  several stay correct (one daemon per account: a lock file per account), but each worker
  answers ``/metrics`` and the daemon's status for itself only;
* ``WEB_TIMEOUT`` (default 60 s) per request; ``LOG_FORMAT`` text or json for gunicorn's own
  lines too; ``WEB_ACCESS_LOG=1`` adds an access log (to stderr).
"""

import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_WORKERS", "1"))
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 20
# Trust X-Forwarded-* only from the reverse proxy on this machine.
forwarded_allow_ips = os.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
_access = os.environ.get("WEB_ACCESS_LOG", "").strip().lower() in ("1", "true", "yes")
accesslog = "-" if _access else None
errorlog = "-"
proc_name = "dr-web"
# The app is built in each worker (build() is a factory): a daemon thread started before a
# fork would not survive into the workers.
preload_app = False
# gunicorn 27's control socket would be written under $HOME (read-only under the unit's
# ProtectSystem=strict); the app needs none.
control_socket_disable = True

_formatter = (
    {"()": "demand_response.logs.JsonFormatter"}
    if os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"
    else {"()": "demand_response.logs.TextFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"}
)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"dr": _formatter},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "dr", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["stderr"] if _access else [], "level": "INFO" if _access else "WARNING",
                            "propagate": False},
    },
}
