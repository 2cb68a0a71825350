"""Start and stop a local development chain (ganache or anvil from the project's npm tools).

Used by ``make demo``, the test fixtures and the benchmarks. The chain listens on
127.0.0.1 only, with deterministic, pre-funded, node-unlocked accounts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DevChainError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# ganache's and anvil's --deterministic mnemonic.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
GANACHE_MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect"
BLOCK_GAS_LIMIT = 30_000_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tool(name: str) -> str:
    local = PROJECT_ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise DevChainError(f"{name} not found in {local.parent} or on PATH; run `npm ci` in {PROJECT_ROOT}")


def _rpc(url: str, method: str, params: list | None = None, timeout: float = 2.0) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise DevChainError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class DevChain:
    """A running local chain; use as a context manager or call ``stop()``."""

    kind: str
    port: int
    process: subprocess.Popen
    chain_id: int
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The HTTP JSON-RPC endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list | None = None) -> object:
        """Call a JSON-RPC method on the chain (handy for evm_* test methods)."""
        return _rpc(self.url, method, params, timeout=30.0)

    def stop(self) -> None:
        """Stop the chain and its child processes."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def __enter__(self) -> "DevChain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    kind: str = "ganache",
    *,
    port: int | None = None,
    accounts: int = 10,
    balance_eth: int = 10_000,
    chain_id: int = 1337,
    block_time: float | None = None,
    hardfork: str = "shanghai",
    extra_args: list[str] | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> DevChain:
    """Start ganache (default) or anvil on 127.0.0.1 and wait until it answers.

    ``hardfork`` defaults to shanghai, the contract's target (ganache 7.9.2's newest).
    """
    port = port or free_port()
    if kind == "ganache":
        args = [
            _tool("ganache"),
            "--server.host", "127.0.0.1",
            "--server.port", str(port),
            "--chain.chainId", str(chain_id),
            "--chain.hardfork", hardfork,
            "--wallet.deterministic",
            "--wallet.totalAccounts", str(accounts),
            "--wallet.defaultBalance", str(balance_eth),
            "--miner.blockGasLimit", str(BLOCK_GAS_LIMIT),
            "--logging.quiet",
        ]
        if block_time:
            args += ["--miner.blockTime", str(block_time)]
    elif kind == "anvil":
        args = [
            _tool("anvil"),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--chain-id", str(chain_id),
            "--hardfork", hardfork,
            "--accounts", str(accounts),
            "--balance", str(balance_eth),
            "--gas-limit", str(BLOCK_GAS_LIMIT),
            "--silent",
        ]
        if block_time:
            args += ["--block-time", str(block_time)]
    else:
        raise DevChainError(f"unknown chain kind {kind!r}; use 'ganache' or 'anvil'")
    args += extra_args or []

    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    finally:
        if log_path:
            out.close()
    chain = DevChain(kind, port, process, chain_id, log_path, args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevChainError(f"{kind} exited with code {process.returncode}; see {log_path or 'its output'}")
        try:
            if int(str(_rpc(chain.url, "eth_chainId")), 16) == chain_id:
                return chain
        except (OSError, ValueError, DevChainError):
            time.sleep(0.1)
    chain.stop()
    raise DevChainError(f"{kind} did not answer on port {port} within {timeout:.0f} s")


def dev_private_keys(count: int, kind: str = "ganache") -> list[str]:
    """Private keys of the chain's deterministic accounts, in order."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    mnemonic = GANACHE_MNEMONIC if kind == "ganache" else DEV_MNEMONIC
    return [
        Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(count)
    ]
