"""``RpcBatcher``: the JSON-RPC calls of many threads sent as few HTTP requests."""

from __future__ import annotations

import logging
import threading
from typing import Any

from web3 import Web3
from web3.exceptions import Web3RPCError

log = logging.getLogger("demand_response.chain")


class RpcBatcher:
    """Sends the JSON-RPC calls of many threads as few HTTP requests ("group commit").

    A fleet's agents each send a bid and poll for its receipt at about the same moment.
    Through web3, every call costs its thread ~4-5 ms of Python (formatters, middleware,
    one HTTP request each) under one GIL: 100 agents needed ~0.5 s of CPU to send and as
    much again per round of receipt polls, so on a chain with 1 s blocks a third to a half
    of a fleet of 100 missed the next block. Here callers queue raw calls, and one thread
    posts whatever is queued as one JSON-RPC batch; what arrives while a batch is in flight
    goes in the next one. A lone call goes out at once as a plain request, so a single
    caller waits no longer than before. Measured on anvil: 100 sends in one batch took
    0.036 s and 3 ms of CPU against 0.48 s and 0.49 s through web3 from 100 threads
    (docs/performance.md, "Latency: causes and fixes").

    Only for plain calls whose raw result the caller formats itself (``Signer`` uses it for
    sends and receipt polls); a failed HTTP request fails every call in its batch with the
    same exception, as it would have failed each of them.
    """

    #: Most calls in one HTTP request (nodes cap batches; anvil and geth accept 1,000).
    MAX_BATCH = 200

    def __init__(self, w3: Web3) -> None:
        self.provider = w3.provider
        self._queue: list[_Call] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        #: Counters for tests and benchmarks: HTTP requests made and calls carried.
        self.posts = 0
        self.calls = 0
        #: False once the endpoint has refused a batch: then every call goes on its own.
        self.batching = True

    def call(self, method: str, params: list[Any]) -> Any:
        """The ``result`` of ``method(params)``; raises ``Web3RPCError`` for an error reply and
        whatever the HTTP request raised (connection errors, timeouts) otherwise."""
        item = _Call(method, params)
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rpc-batcher", daemon=True)
                self._thread.start()
            self._queue.append(item)
            self._cv.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        reply = item.reply
        if not isinstance(reply, dict):
            raise Web3RPCError(f"malformed JSON-RPC reply to {method}: {reply!r}")
        if reply.get("error") is not None:
            error = reply["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise Web3RPCError(message, rpc_response=reply)  # type: ignore[arg-type]
        return reply.get("result")

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                batch, self._queue = self._queue[:self.MAX_BATCH], self._queue[self.MAX_BATCH:]
            self._post(batch)

    def _post(self, batch: list["_Call"]) -> None:
        try:
            if len(batch) == 1 or not self.batching:
                replies: Any = [self.provider.make_request(c.method, c.params) for c in batch]
            else:
                replies = self._batch(batch)
            self.posts += 1
            self.calls += len(batch)
            for item, reply in zip(batch, replies):
                item.reply = reply
        except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
            for item in batch:
                item.error = exc
        finally:
            for item in batch:
                item.done.set()

    def _batch(self, batch: list["_Call"]) -> list[Any]:
        """One batch request; if the endpoint refuses batches, the calls one by one, and no
        batches from then on. Only a refusal the node cannot have acted on (an HTTP 4xx, or
        one error object instead of a list) is retried call by call: re-sending transactions
        the node did accept could place a bid twice."""
        import requests

        try:
            replies = self.provider.make_batch_request([(c.method, c.params) for c in batch])
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if not 400 <= status < 500:
                raise
            refused = f"HTTP {status}"
        except AttributeError:  # web3 sorting a lone error object (IPC / WebSocket providers)
            refused = "an error instead of a list"
        else:
            if isinstance(replies, list) and len(replies) == len(batch):
                return replies
            refused = "an error instead of a list"
        self.batching = False
        log.warning("the RPC endpoint refused a JSON-RPC batch (%s); sending one call at a time from now on",
                    refused)
        return [self.provider.make_request(c.method, c.params) for c in batch]


class _Call:
    __slots__ = ("method", "params", "reply", "error", "done")

    def __init__(self, method: str, params: list[Any]) -> None:
        self.method, self.params = method, params
        self.reply: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
