"""gunicorn settings of the web app (``run_flask.sh``, ``deploy/dr-web.service``).

Every value comes from the environment, so one file serves both:

* ``WEB_BIND`` (default ``127.0.0.1:5000``): where to listen; keep it on loopback behind
  the reverse proxy (docs/production.md);
* ``WEB_WORKERS`` (default 1) processes of ``WEB_THREADS`` (default 16) threads each (gthread:
  a page's live stream holds one thread, not a worker; each worker keeps ``WEB_THREADS`` - 4
  threads for streams at most, ``WEB_LIVE_STREAMS``, so pages and the API always get one).
  Several workers stay correct (one daemon per account: a lock file per account); the daemon's
  status is the worker's that runs it;
* metrics with several workers: ``PROMETHEUS_MULTIPROC_DIR`` (default: a fresh temporary
  folder, removed at exit, when ``WEB_WORKERS`` > 1) is emptied of old values at start and
  set for the workers, a dead worker's live gauges are dropped, and a scrape of any worker
  adds up every worker's counters (flaskapp/ops.py);
* ``WEB_TIMEOUT`` (default 60 s) per request; ``LOG_FORMAT`` text or json for gunicorn's own
  lines too; ``WEB_ACCESS_LOG=1`` adds an access log (to stderr).
"""

import os
import shutil
import signal
import tempfile
from pathlib import Path

bind = os.environ.get("WEB_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_WORKERS", "1"))
threads = int(os.environ.get("WEB_THREADS", "16"))
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


_made_dir: list[str] = []


def on_starting(server):  # noqa: ANN001 - gunicorn's hook signature
    """Metrics of several workers: one folder for their values, emptied of an earlier run's."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if not folder and workers > 1:
        folder = tempfile.mkdtemp(prefix="dr-web-metrics-")
        _made_dir.append(folder)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for old in Path(folder).glob("*.db"):  # only the client's value files: the folder may hold others
        old.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    server.log.info("metrics of every worker in %s (PROMETHEUS_MULTIPROC_DIR)", folder)


def child_exit(server, worker):  # noqa: ANN001
    """A worker ended: its live gauges no longer count."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        try:
            from prometheus_client import multiprocess
        except ImportError:
            return
        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001
    """Remove the temporary metrics folder made at start."""
    for folder in _made_dir:
        shutil.rmtree(folder, ignore_errors=True)


def post_worker_init(worker):  # noqa: ANN001
    """On SIGTERM, end the worker's live streams first, so the graceful stop does not wait for them."""
    stop = worker.handle_exit

    def handle_exit(sig, frame):  # noqa: ANN001
        try:
            from flaskapp.live import shutdown_all

            shutdown_all()
        finally:
            stop(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)
