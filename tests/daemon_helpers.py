"""Helpers for tests that run the ``dr`` CLI as real subprocesses (no mocks)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def dr_env(**extra: str) -> dict[str, str]:
    """A clean environment for a ``python -m demand_response`` subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "UTILITY_ACCOUNT_PASS",
        "CONSUMER_ACCOUNT", "CONSUMER_ACCOUNT_PASS", "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY",
        "BIDS_FILE", "RESULTS_FILE", "STATE_DIR", "DR_ENV_FILE", "KEYSTORE_DIR", "WEB3_INFURA_PROJECT_ID")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_dr(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``dr ARGS`` to completion."""
    return subprocess.run(
        [PYTHON, "-m", "demand_response", *args], cwd=cwd, env=env or dr_env(), input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.1, what: str = "") -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Daemon:
    """A ``dr`` daemon subprocess whose combined output goes to a log file."""

    def __init__(self, args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None, **popen) -> None:
        self.log = log
        self._handle = open(log, "ab")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "demand_response", *args], cwd=cwd, env=env or dr_env(),
            stdout=self._handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            **popen,
        )

    def output(self) -> str:
        """Everything the daemon has printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float = 30, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the output."""
        def seen() -> bool:
            if self.process.poll() is not None and self.output().count(text) < count:
                raise AssertionError(f"daemon exited ({self.process.returncode}) before printing {text!r}:\n{self.output()}")
            return self.output().count(text) >= count
        wait_until(seen, timeout, what=f"{text!r} in {self.log.name}:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 15) -> int:
        """SIGINT (what Ctrl-C sends) and wait for a clean exit."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"daemon did not stop on SIGINT:\n{self.output()}")
        self._handle.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (a crash or a power cut)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._handle.close()


class TcpProxy:
    """A TCP forwarder in front of a node that can be taken down and brought back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = False

    @property
    def url(self) -> str:
        """The proxied HTTP endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Start accepting connections."""
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        server.settimeout(0.2)
        self._server, self._running = server, True
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._running = False
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except OSError:
                    pass
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._running:
            try:
                client, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                if not self._running and not ready:
                    break
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass
