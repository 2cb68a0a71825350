"""JSON-RPC over a WebSocket, for the synchronous daemons, on web3 7 and web3 8 alike.

web3 7's ``LegacyWebSocketProvider`` runs an event loop per call and is gone from web3 8,
whose ``WebSocketProvider`` is asyncio-only (``AsyncWeb3``). The daemons are threads, so
this provider speaks JSON-RPC on one ``websockets.sync`` connection (web3 depends on
``websockets``, so the light install has it): one request at a time under a lock, the
answer matched by its id, a connection that dropped re-opened on the next call. A call
whose connection drops is never re-sent here (it may have been a transaction): it fails
with the builtin ``ConnectionError``, which the listeners' backoff and the signer know.

Subscriptions (``eth_subscribe``) use a connection of their own: ``demand_response.push``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from web3.providers.base import JSONBaseProvider

#: Calls that only read: asked again once when the socket had gone stale.
_REPEATABLE = ("eth_get", "eth_call", "eth_estimateGas", "eth_chainId", "eth_blockNumber", "eth_gasPrice",
               "eth_feeHistory", "eth_maxPriorityFeePerGas", "eth_syncing", "net_version", "web3_clientVersion")
#: Largest message accepted (bytes): a wide ``eth_getLogs`` answer can be several MB.
MAX_MESSAGE = 64 * 2**20


def open_socket(url: str, timeout: float) -> Any:
    """A connected ``websockets.sync`` client for ``url`` (OSError-like failures as ``ConnectionError``)."""
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    try:
        return connect(url, open_timeout=timeout, close_timeout=1, max_size=MAX_MESSAGE,
                       ping_interval=20, ping_timeout=20)
    except InvalidURI as exc:
        raise ConnectionError(f"not a WebSocket URL: {exc}") from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ConnectionError(f"cannot open a WebSocket ({type(exc).__name__}: {exc})") from exc


class WebSocketRpc(JSONBaseProvider):
    """A synchronous, thread-safe web3 provider over one WebSocket connection."""

    def __init__(self, endpoint_uri: str, timeout: float = 30.0) -> None:
        super().__init__()
        self.endpoint_uri = endpoint_uri
        self.timeout = timeout
        self._ws: Any = None
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return f"WebSocket connection: {self.endpoint_uri}"

    def make_request(self, method: Any, params: Any) -> Any:
        """One JSON-RPC call; ``ConnectionError`` when the socket cannot be used. A read whose
        socket had gone stale since the last call (the node closed an idle connection) is
        asked once more on a new one; a send never is."""
        request = self.encode_rpc_request(method, params)
        wanted = json.loads(request)["id"]
        try:
            return self.decode_rpc_response(self._exchange(request, {wanted}))
        except ConnectionError as exc:
            if not (str(method).startswith(_REPEATABLE) and getattr(exc, "stale", False)):
                raise
        from .. import metrics

        metrics.rpc_retry("transport")
        return self.decode_rpc_response(self._exchange(request, {wanted}))

    def make_batch_request(self, requests: list[tuple[Any, Any]]) -> Any:
        """A JSON-RPC batch (a list of answers in the order asked, or the node's one error)."""
        request = self.encode_batch_rpc_request(requests)
        ids = [item["id"] for item in json.loads(request)]
        reply = json.loads(self._exchange(request, set(ids)))
        if isinstance(reply, list):
            by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
            return [by_id.get(i, {"jsonrpc": "2.0", "id": i, "error": {"code": -32603, "message": "no answer"}})
                    for i in ids]
        return reply

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None

    def _exchange(self, request: bytes, ids: set[Any]) -> bytes:
        from websockets.exceptions import ConnectionClosed

        with self._lock:
            stale = self._ws is not None
            if self._ws is None:
                self._ws = open_socket(self.endpoint_uri, self.timeout)
            try:
                self._ws.send(request.decode())
                while True:
                    raw = self._ws.recv(timeout=self.timeout)
                    if _answers(raw, ids):
                        return raw.encode() if isinstance(raw, str) else raw
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                self._drop()
                failed = ConnectionError(f"WebSocket to the node failed ({type(exc).__name__})")
                failed.stale = stale and isinstance(exc, ConnectionClosed)  # type: ignore[attr-defined]
                raise failed from exc


def _answers(raw: Any, ids: set[Any]) -> bool:
    """True when ``raw`` is the answer to the call (or batch) with ``ids`` (a stray
    subscription notification or a late answer to an abandoned call is skipped)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return False
    if isinstance(message, list):
        return any(isinstance(m, dict) and m.get("id") in ids for m in message)
    return isinstance(message, dict) and (message.get("id") in ids or
                                          ("id" in message and message["id"] is None and "error" in message))
