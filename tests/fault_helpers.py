"""Fault injection for the daemon tests: a restartable anvil that keeps its chain, and a
loopback JSON-RPC proxy that delays, resets or stalls requests and counts them.

Everything listens on 127.0.0.1 only and stops by itself with the test.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from demand_response import devchain


class PersistentAnvil:
    """An anvil whose chain survives being killed: ``--state FILE --state-interval 1``.

    ``kill()`` is SIGKILL (no clean shutdown; anvil loses at most the last second, as a
    crashed node loses its unflushed tail), ``start()`` brings it back on the same port
    from the last dump.
    """

    def __init__(self, folder: Path, accounts: int = 10) -> None:
        self.folder = folder
        self.state = folder / "anvil-state.json"
        self.accounts = accounts
        self.port = devchain.free_port()
        self.chain: devchain.DevChain | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> devchain.DevChain:
        self.chain = devchain.start(
            "anvil", port=self.port, accounts=self.accounts, log_path=self.folder / "anvil.log",
            extra_args=["--state", str(self.state), "--state-interval", "1"])
        return self.chain

    def kill(self) -> None:
        assert self.chain is not None
        try:
            os.killpg(self.chain.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.chain.process.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def rpc(self, method: str, params: list | None = None) -> object:
        assert self.chain is not None
        return self.chain.rpc(method, params)

    def stop(self) -> None:
        if self.chain is not None:
            self.chain.stop()


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes, bytes]:
    """(head, body, rest) of one HTTP request from ``sock``; head None when the client closed."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None, b"", b""
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None, b"", b""
        rest += data
    return head, rest[:length], rest[length:]


class FlakyRpcProxy:
    """An HTTP JSON-RPC forwarder on 127.0.0.1 with switchable faults.

    Modes: ``ok`` (forward), ``delay`` (forward after ``delay`` s), ``reset`` (answer every
    request with a TCP reset: the node is down), ``lose_send_reply`` (forward a raw
    transaction, then reset instead of answering; everything else normally), ``flaky`` (reset a seeded fraction
    ``p_reset`` of requests, stall a fraction ``p_stall`` for ``stall`` s and then close
    without an answer, delay the rest). Every request is time-stamped in ``hits``.
    """

    def __init__(self, target_port: int, seed: int = 7) -> None:
        self.target_port = target_port
        self.port = devchain.free_port()
        self.mode = "ok"
        self.delay = 0.0
        self.p_reset = 0.0
        self.p_stall = 0.0
        self.stall = 2.0
        self.hits: list[tuple[float, str]] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._running = True
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(128)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str, **options: float) -> None:
        for key, value in options.items():
            setattr(self, key, value)
        self.mode = mode

    def rate(self, since: float, until: float) -> float:
        """Requests per second that reached the proxy between two ``time.monotonic()`` stamps."""
        with self._lock:
            count = sum(1 for t, _ in self.hits if since <= t < until)
        return count / max(until - since, 1e-9)

    def close(self) -> None:
        self._running = False
        self._server.close()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    def _serve(self, client: socket.socket) -> None:
        upstream: http.client.HTTPConnection | None = None
        buffer = b""
        try:
            while self._running:
                head, body, buffer = _read_request(client, buffer)
                if head is None:
                    return
                mode = self.mode
                with self._lock:
                    self.hits.append((time.monotonic(), mode))
                    roll = self._random.random()
                if mode == "lose_send_reply" and b"eth_sendRawTransaction" in body:
                    # the node gets the transaction, the client never hears back
                    forward = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=30)
                    forward.request("POST", "/", body, {"Content-Type": "application/json"})
                    forward.getresponse().read()
                    forward.close()
                    self._reset(client)
                    return
                if mode == "reset" or (mode == "flaky" and roll < self.p_reset):
                    self._reset(client)
                    return
                if mode == "flaky" and roll < self.p_reset + self.p_stall:
                    time.sleep(self.stall)
                    self._reset(client)
                    return
                if mode in ("delay", "flaky") and self.delay:
                    time.sleep(self.delay)
                if upstream is None:
                    upstream = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=30)
                try:
                    upstream.request("POST", "/", body, {"Content-Type": "application/json"})
                    reply = upstream.getresponse()
                    data = reply.read()
                except OSError:
                    self._reset(client)
                    return
                client.sendall(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (reply.status, reply.reason.encode(), len(data)) + data)
        except OSError:
            pass
        finally:
            if upstream is not None:
                upstream.close()
            try:
                client.close()
            except OSError:
                pass


def reply_json(handler: Any, data: bytes, status: int = 200) -> None:
    """Answer an ``http.server`` request with a JSON body (the test proxies' replies)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
