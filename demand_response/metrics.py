"""Prometheus metrics of the daemons and the web app (docs/production.md lists them).

Needs ``prometheus-client`` (the ``ops`` extra). Without it every recorder below is a
no-op and ``/metrics`` answers 503 with the fix, so a consumer board's light install runs the
daemon unchanged. Metrics live in their own registry, created on first use (importing this
module does nothing).

The daemons call the recorders (``request_heard``, ``bids_sent`` …); ``instrument(w3)``
counts RPC errors and web3's transport retries of one connection; ``serve`` exposes
``/metrics`` and ``/healthz`` on a port for a daemon (127.0.0.1 by default); the web app
mounts the same two views (``flaskapp/ops.py``).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

#: Seconds from hearing a request to the bid's receipt.
REACTION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Requests heard whose reaction is still awaited, at most (oldest forgotten first).
_HEARD_KEPT = 4096
#: The ``kind`` labels of ``dr_rpc_errors`` and ``dr_rpc_retries`` (``rpc_error``, ``rpc_retry``).
RPC_ERROR_KINDS = ("connection", "timeout", "http", "rpc", "revert", "other")
RPC_RETRY_KINDS = ("transport", "unreachable", "disk", "dropped", "replacement", "push")
#: prometheus-client's multiprocess folder (``share_with_children``).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: What ``/metrics`` says when prometheus-client is not installed.
MISSING = "metrics need prometheus-client: pip install 'demand-response[ops]'"

_TEXT = "text/plain; charset=utf-8"
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

#: A health callable: (HTTP status, JSON-able report).
HealthFn = Callable[[], "tuple[int, dict[str, Any]]"]


class _Metrics:
    """The metric objects, in one registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests_heard = Counter("dr_requests_heard", "Reduction requests the daemon heard", registry=r)
        self.bids_sent = Counter("dr_bids_sent", "Bids (price levels) sent in transactions", registry=r)
        self.bids_mined = Counter("dr_bids_mined", "Bids (price levels) whose transaction was mined", registry=r)
        self.reaction = Histogram("dr_reaction_seconds", "Seconds from hearing a request to the bid's receipt",
                                  buckets=REACTION_BUCKETS, registry=r)
        self.rpc_errors = Counter("dr_rpc_errors", "Failed JSON-RPC calls, by kind", ["kind"], registry=r)
        self.rpc_retries = Counter("dr_rpc_retries", "Retries after a failure, by kind", ["kind"], registry=r)
        self.gas_used = Counter("dr_gas_used", "Gas used by mined transactions (gas), by contract function",
                                ["action"], registry=r)
        self.fees_paid = Counter("dr_fees_paid_wei", "Fees paid for mined transactions (wei), by contract function",
                                 ["action"], registry=r)
        self.owed = Gauge("dr_owed_wei", "Balance the contract owes an account, withdrawable (wei)", ["account"],
                          registry=r, multiprocess_mode="mostrecent")
        self.lag = Gauge("dr_listener_lag_blocks", "Blocks between the node's head and the last block the "
                         "listener scanned", ["daemon"], registry=r, multiprocess_mode="mostrecent")
        for kind in RPC_ERROR_KINDS:  # every series from the start: a scrape shows 0, not nothing
            self.rpc_errors.labels(kind=kind)
        for kind in RPC_RETRY_KINDS:
            self.rpc_retries.labels(kind=kind)
        self.push = Gauge("dr_push_connected", "1 while the listener's WebSocket subscriptions are up, "
                          "0 while it polls", ["daemon"], registry=r, multiprocess_mode="mostrecent")
        self.relayed = Counter("dr_relayed_entries", "Households' signed entries the relay handled, by outcome "
                               "(placed, skipped by the contract, dropped unsent)", ["outcome"], registry=r)
        for outcome in ("placed", "skipped", "dropped"):
            self.relayed.labels(outcome=outcome)
        self.relay_gas = Counter("dr_relay_gas_used", "Gas the relay's batch transactions used (paid by the "
                                 "utility)", registry=r)
        self.heartbeat = Gauge("dr_heartbeat_timestamp_seconds", "Unix time of the daemon loop's last round",
                               ["daemon"], registry=r, multiprocess_mode="mostrecent")


_lock = threading.Lock()
_state: dict[str, Any] = {}


def _m() -> _Metrics | None:
    """The metrics, created on first use; None when prometheus-client is missing."""
    if "metrics" not in _state:
        with _lock:
            if "metrics" not in _state:
                try:
                    _state["metrics"] = _Metrics()
                except ImportError:
                    log.debug("prometheus-client is not installed: metrics are off")
                    _state["metrics"] = None
    return _state["metrics"]


def available() -> bool:
    """True when prometheus-client is installed (metrics are recorded)."""
    return _m() is not None


def registry() -> Any:
    """The package's ``CollectorRegistry`` (None without prometheus-client)."""
    metrics = _m()
    return metrics.registry if metrics else None


# -- recorders (each a no-op without prometheus-client) -------------------------------------


def request_heard(request_id: int | None = None, account: str | None = None) -> None:
    """A ``ReductionRequested`` event reached the daemon (of ``account``, which may react to it:
    ``reacted`` then observes the reaction time)."""
    if metrics := _m():
        metrics.requests_heard.inc()
        if request_id is not None:
            with _lock:
                heard = _state.setdefault("heard", {})
                heard[(int(request_id), str(account).lower())] = time.monotonic()
                while len(heard) > _HEARD_KEPT:  # requests never bid on (above the cap, say)
                    del heard[next(iter(heard))]


def reacted(request_id: int, account: str) -> None:
    """``account``'s first transaction on ``request_id`` (a bid or a sealed commitment) was mined:
    observe the seconds since the request was heard (once per request and account)."""
    if metrics := _m():
        with _lock:
            heard = _state.get("heard", {}).pop((int(request_id), str(account).lower()), None)
        if heard is not None:
            metrics.reaction.observe(max(0.0, time.monotonic() - heard))


def bids_sent(count: int = 1) -> None:
    """``count`` bids went out in one transaction."""
    if (metrics := _m()) and count > 0:
        metrics.bids_sent.inc(count)


def bids_mined(count: int = 1, request_id: int | None = None, account: str | None = None) -> None:
    """``count`` bids were mined (with the request and the bidder: also ``reacted``)."""
    if (metrics := _m()) and count > 0:
        metrics.bids_mined.inc(count)
    if request_id is not None and account is not None:
        reacted(request_id, account)


def relay_batch(placed: int, skipped: int, gas: int) -> None:
    """A relay batch was mined: ``placed`` and ``skipped`` entries, ``gas`` used (the utility's)."""
    if metrics := _m():
        metrics.relayed.labels(outcome="placed").inc(placed)
        metrics.relayed.labels(outcome="skipped").inc(skipped)
        metrics.relay_gas.inc(gas)


def relay_dropped(count: int) -> None:
    """``count`` queued relay entries were dropped unsent (their request closed first)."""
    if (metrics := _m()) and count > 0:
        metrics.relayed.labels(outcome="dropped").inc(count)


def observe_reaction(seconds: float) -> None:
    """Seconds from hearing a request to the bid's receipt."""
    if metrics := _m():
        metrics.reaction.observe(max(0.0, seconds))


def rpc_error(kind: str) -> None:
    """A failed RPC call: connection, timeout, http, rpc (the node's JSON-RPC error) or revert."""
    if metrics := _m():
        metrics.rpc_errors.labels(kind=kind).inc()


def rpc_retry(kind: str) -> None:
    """A retry: transport (web3 re-sent a read), unreachable (the listener's backoff), disk,
    dropped (a transaction sent again), replacement (a fee bump) or push (the push feed
    reconnecting its WebSocket)."""
    if metrics := _m():
        metrics.rpc_retries.labels(kind=kind).inc()


def transaction_mined(tx: dict[str, Any], receipt: Any) -> None:
    """Count the gas and the fee of a mined transaction (reverted ones spend gas too)."""
    metrics = _m()
    if metrics is None:
        return
    gas = int(receipt.get("gasUsed", 0) or 0)
    price = int(receipt.get("effectiveGasPrice") or tx.get("maxFeePerGas") or tx.get("gasPrice") or 0)
    action = _action(tx)
    metrics.gas_used.labels(action=action).inc(gas)
    metrics.fees_paid.labels(action=action).inc(gas * price)


def set_owed(account: str, wei: int) -> None:
    """What the contract owes ``account`` now (``DemandReduction.owed``)."""
    if metrics := _m():
        metrics.owed.labels(account=account).set(wei)


def set_lag(daemon: str, blocks: int) -> None:
    """Blocks between the head and the last block the daemon's listener scanned."""
    if metrics := _m():
        metrics.lag.labels(daemon=daemon).set(max(0, blocks))


def set_push(daemon: str, live: bool) -> None:
    """The daemon's push feed is subscribed (True) or the listener polls (False)."""
    if metrics := _m():
        metrics.push.labels(daemon=daemon).set(1 if live else 0)


def set_heartbeat(daemon: str, unix_time: float) -> None:
    """The daemon loop's last round (set by ``health.beat``)."""
    if metrics := _m():
        metrics.heartbeat.labels(daemon=daemon).set(unix_time)


def _selectors() -> dict[str, str]:
    if "selectors" not in _state:
        from eth_utils import function_abi_to_4byte_selector

        from .artifacts import load_artifact

        _state["selectors"] = {
            "0x" + function_abi_to_4byte_selector(item).hex(): item["name"]
            for item in load_artifact()["abi"] if item.get("type") == "function"
        }
    return _state["selectors"]


def _action(tx: dict[str, Any]) -> str:
    """The contract function a transaction calls (bounded label values)."""
    if not tx.get("to"):
        return "deploy"
    data = tx.get("data") or tx.get("input") or ""
    data = data if isinstance(data, str) else "0x" + bytes(data).hex()
    if len(data) < 10:
        return "transfer"
    return _selectors().get(data[:10].lower(), "other")


# -- RPC instrumentation --------------------------------------------------------------------

_calls = threading.local()


def error_kind(exc: BaseException) -> str:
    """connection, timeout, http or other: the kind label of a transport failure."""
    try:
        import requests

        if isinstance(exc, requests.Timeout):
            return "timeout"
        if isinstance(exc, requests.HTTPError):
            return "http"
        if isinstance(exc, requests.ConnectionError):
            return "connection"
    except ImportError:  # pragma: no cover - web3 brings requests
        pass
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (ConnectionError, OSError)):
        return "connection"
    return "other"


def _rpc_kind(error: Any) -> str:
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    return "revert" if code == 3 or "revert" in message.lower() else "rpc"


def instrument(w3: Any) -> Any:
    """Count the RPC errors and web3's transport retries of ``w3``'s provider; returns ``w3``.

    Wraps this provider instance only (idempotent). A JSON-RPC error answer counts as kind
    ``rpc`` (``revert`` for an execution revert); a transport failure as connection, timeout
    or http; each attempt web3 repeated after a dropped connection as a ``transport`` retry.
    """
    provider = w3.provider
    if getattr(provider, "_dr_metrics", False) or _m() is None:
        return w3
    inner = provider.make_request

    def make_request(method: Any, params: Any) -> Any:
        if getattr(_calls, "failures", None) is not None:  # nested (web3's request cache): the outer call counts
            return inner(method, params)
        _calls.failures = 0
        try:
            response = inner(method, params)
        except Exception as exc:
            _retried(_calls.failures - 1)
            rpc_error(error_kind(exc))
            raise
        finally:
            failures, _calls.failures = _calls.failures, None
        _retried(failures)
        if isinstance(response, dict) and response.get("error"):
            rpc_error(_rpc_kind(response["error"]))
        return response

    provider.make_request = make_request
    provider._request_func_cache = (None, None)  # web3 caches the middleware chain around the old one
    manager = getattr(provider, "_request_session_manager", None)
    if manager is not None and hasattr(manager, "make_post_request"):
        post = manager.make_post_request

        def make_post_request(*args: Any, **kwargs: Any) -> Any:
            try:
                return post(*args, **kwargs)
            except Exception as exc:
                if getattr(_calls, "failures", None) is None:  # a batch: no retry loop around it
                    rpc_error(error_kind(exc))
                else:
                    _calls.failures += 1
                raise

        manager.make_post_request = make_post_request
    provider._dr_metrics = True
    return w3


def _retried(count: int) -> None:
    for _ in range(max(0, count)):
        rpc_retry("transport")


# -- exposition -----------------------------------------------------------------------------


def exposition(accept: str | None = None) -> tuple[int, bytes, str]:
    """(HTTP status, body, content type) of a scrape of the package's metrics."""
    metrics = _m()
    if metrics is None:
        return 503, (MISSING + "\n").encode(), _TEXT
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return 200, encoder(_exposed(metrics.registry)), content_type


def _exposed(registry: Any) -> Any:
    """``registry``, or in multiprocess mode (``share_with_children``) one that reads every
    process's values from the shared folder."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder or not os.path.isdir(folder):
        return registry
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry()
    MultiProcessCollector(merged, folder)
    return merged


def share_with_children(folder: Any) -> None:
    """Multiprocess mode: this process and the daemons it starts afterwards (which inherit
    the environment) keep their values in ``folder`` (emptied first), and ``/metrics`` here
    shows their sum (counters, histograms) or latest value (gauges). Call it before any
    metric is recorded: prometheus-client picks its value store when first imported."""
    import shutil
    import sys
    from pathlib import Path

    if "prometheus_client.values" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        log.warning("metrics were recorded before multiprocess mode was set: /metrics shows only other processes")
    path = Path(folder)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


def token_ok(authorization: str | None, token: str | None) -> bool:
    """True when no token is required, or ``authorization`` is ``Bearer <token>``."""
    if not token:
        return True
    given = (authorization or "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def wsgi_app(health: HealthFn | None = None, token: str | None = None) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: ``/metrics`` (Prometheus; ``Authorization: Bearer <token>`` when ``token``
    is set) and ``/healthz`` (JSON, 200 or 503)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            status, body, ctype = 405, b"GET only\n", _TEXT
        elif path == "/metrics" and not token_ok(environ.get("HTTP_AUTHORIZATION"), token):
            status, body, ctype = 401, b"metrics need Authorization: Bearer <METRICS_TOKEN>\n", _TEXT
        elif path == "/metrics":
            status, body, ctype = exposition(environ.get("HTTP_ACCEPT"))
        elif path == "/healthz" and health is not None:
            status, report = health()
            body, ctype = json.dumps(report, sort_keys=True).encode(), "application/json"
        else:
            status, body, ctype = 404, b"not found: try /metrics or /healthz\n", _TEXT
        reason = _REASONS[status]
        start_response(f"{status} {reason}", [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                              ("Cache-Control", "no-store")])
        return [body]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s: no access log
        pass


class MetricsServer:
    """A running ``/metrics`` + ``/healthz`` server in a background thread."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server
        self.host, self.port = server.server_address[:2]
        self._thread = threading.Thread(target=server.serve_forever, name="dr-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:9108."""
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(port: int, host: str = "127.0.0.1", health: HealthFn | None = None,
          token: str | None = None) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` for a daemon on ``host:port`` (0: a free port).

    Raises ``ConfigError`` (one line) when the port cannot be bound.
    """
    from .errors import ConfigError

    try:
        server = make_server(host, port, wsgi_app(health, token), server_class=_ThreadingServer,
                             handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                          "choose another METRICS_PORT or leave it empty") from None
    if not available():
        log.warning("%s; /metrics answers 503, /healthz works", MISSING)
    running = MetricsServer(server)
    log.info("metrics on %s/metrics, health on %s/healthz", running.url, running.url)
    return running


def serve_from_settings(settings: Any, health: HealthFn | None = None) -> MetricsServer | None:
    """``serve`` on ``METRICS_PORT`` / ``METRICS_HOST`` (``METRICS_TOKEN``) from the settings;
    None when no port is set."""
    from .errors import ConfigError

    raw = settings.get("METRICS_PORT")
    if not raw:
        return None
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"METRICS_PORT must be a port number (1-65535), not {raw!r}") from None
    return serve(port, settings.get("METRICS_HOST", "127.0.0.1"), health, settings.get("METRICS_TOKEN"))
