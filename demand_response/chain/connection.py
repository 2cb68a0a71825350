"""Opening a Web3 connection to a node (HTTP, WebSocket or IPC).

``connect`` adds the extra-data middleware on PoA chains, shares one pooled HTTP session
between threads, retries idempotent reads on a dropped connection, and turns an
unreachable endpoint into a one-line ``ConnectionProblem``. A ``ws://``/``wss://`` URL
speaks JSON-RPC over one WebSocket (``wsrpc.WebSocketRpc``, web3 7 and 8).

It also decides where the listeners' push feed (``push.PushFeed``) subscribes:
``push_url_of(w3)``.
"""

from __future__ import annotations

import logging
from typing import Any

from web3 import Web3

from .. import metrics
from ..errors import ConnectionProblem
from ..networks import needs_poa_middleware

log = logging.getLogger("demand_response.chain")

#: HTTP timeout for a node on this machine (seconds).
LOCAL_TIMEOUT = 10.0


def connect(url: str, timeout: float = 30.0, poa: bool = False, push: str | None = None) -> Web3:
    """A connected Web3 for ``url`` (http(s)://, ws(s):// or an IPC path); ``poa``: the named
    network is proof-of-authority (``networks``), so web3's extraData middleware goes in even
    if the latest block does not show it. ``push``: the ``WS_URL`` setting (``push_url_of``)."""
    if url.startswith(("http://", "https://")):
        # A node on this machine answers in milliseconds. Under concurrent load ganache 7
        # was seen to leave a request unanswered until the client gave up; a short timeout
        # lets web3 retry read calls soon instead of after 30 s.
        kwargs: dict[str, Any] = {"timeout": min(timeout, LOCAL_TIMEOUT) if _is_loopback(url) else timeout}
        # web3 re-asks eth_chainId before every call, estimate and send it validates (8 round
        # trips per bid, which a fleet of 100 paid 800 times); it cannot change, so cache it.
        # One session for all threads, with room for a fleet's agents: web3's default keeps
        # one session per thread in a cache of 100, so a fleet of 100+ threads would keep
        # evicting and reconnecting.
        provider: Any = Web3.HTTPProvider(url, request_kwargs=kwargs, exception_retry_configuration=_retry_reads(),
                                          session=_shared_session(),
                                          cache_allowed_requests=True, cacheable_requests={"eth_chainId"})
    elif url.startswith(("ws://", "wss://")):
        from .wsrpc import WebSocketRpc

        provider = WebSocketRpc(url, timeout=timeout)
    else:
        provider = Web3.IPCProvider(url, timeout=timeout)
    w3 = metrics.instrument(Web3(provider))  # RPC errors and transport retries, by kind
    # Signer always sets the fees itself; this middleware would still fetch the latest block
    # before every node-signed send (a fleet on a dev chain: one extra round trip per bid).
    w3.middleware_onion.remove("gas_price_strategy")
    try:
        chain_id = w3.eth.chain_id
    except Exception as exc:  # requests/aiohttp/OSError all mean the same to a user
        raise ConnectionProblem(
            f"cannot reach the RPC endpoint {redact_url(url)} ({type(exc).__name__}); "
            "check RPC_URL / --network and that the node is running"
        ) from exc
    if poa or _is_poa(w3):
        from web3.middleware import ExtraDataToPOAMiddleware

        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    provider.dr_push = _push_target(url, push)
    log.debug("connected to chain %s at %s", chain_id, redact_url(url))
    return w3


#: ``WS_URL`` values that turn the push feed off.
PUSH_OFF = ("off", "none", "no", "0", "false")


def _push_target(url: str, setting: str | None) -> tuple[str, bool] | None:
    """(WebSocket URL, optional) for the push feed, or None (polling only).

    ``WS_URL`` set: that URL (``off`` disables push). Unset: the RPC URL when it is ws(s)://;
    for an HTTP node on this machine, ws:// on the same host and port (anvil and ganache
    serve both there), given up quietly if nothing answers; else none.
    """
    setting = (setting or "").strip()
    if setting.lower() in PUSH_OFF:
        return None
    if setting:
        if not setting.startswith(("ws://", "wss://")):
            from ..errors import ConfigError

            raise ConfigError(f"WS_URL must be a ws:// or wss:// URL (or 'off'), not {redact_url(setting)!r}")
        return setting, False
    if url.startswith(("ws://", "wss://")):
        return url, False
    if url.startswith("http://") and _is_loopback(url):
        return "ws://" + url.removeprefix("http://"), True
    return None


def push_url_of(w3: Web3) -> tuple[str, bool] | None:
    """Where ``w3``'s listeners subscribe: (WebSocket URL, optional) or None (``connect`` decides)."""
    return getattr(w3.provider, "dr_push", None)


def _shared_session() -> Any:
    """A requests session safe to share between threads, pooling up to 256 keep-alive connections."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=256)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _retry_reads() -> Any:
    """web3's retry of idempotent calls (reads, estimates, receipts; never a send), also on a
    reset or refused connection: web3 retries only the builtin ``ConnectionError``, which
    requests' ``ConnectionError`` is not, so one dropped connection failed a whole round."""
    import requests
    from web3.providers.rpc.utils import ExceptionRetryConfiguration

    return ExceptionRetryConfiguration(
        errors=(ConnectionError, requests.ConnectionError, requests.HTTPError, requests.Timeout),
        retries=4, backoff_factor=0.1)


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].split("@")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def redact_url(url: str) -> str:
    """``url`` without credentials or API keys in its path, for logs."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0].split("@")[-1]
    return f"{scheme}://{host}/…" if "/" in rest.strip("/") else f"{scheme}://{host}"


def _is_poa(w3: Web3) -> bool:
    """True when block extra data is longer than 32 bytes (clique/IBFT-style PoA).

    Reads the raw JSON-RPC reply: web3's block formatters reject such blocks before we
    could look at them.
    """
    try:
        reply = w3.provider.make_request("eth_getBlockByNumber", ["latest", False])
    except Exception:
        return False
    block = reply.get("result") if isinstance(reply, dict) else None
    return needs_poa_middleware(None, block.get("extraData") if isinstance(block, dict) else None)
