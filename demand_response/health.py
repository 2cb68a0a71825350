"""Is it well? The node, the contract and the daemons, as JSON with HTTP 200 or 503.

* node: reachable, the chain id the settings expect, the head advancing (a head unchanged for
  ``head_max_age`` seconds fails; off on dev chains, which mine only on demand);
* contract: code at ``CONTRACT_ADDRESS``;
* daemons: each daemon loop calls ``beat`` once a round; a beat older than
  ``heartbeat_max_age`` seconds or a listener more than ``max_lag_blocks`` behind fails.
  Each daemon's entry also says how it hears events (``push`` or ``polling``): polling is a
  working fallback, not a failure.

``HealthCheck.from_settings(settings)`` reads the ``HEALTH_*`` keys (``.env.template``);
calling the object returns ``(status, report)``. ``metrics.serve`` and ``flaskapp/ops.py``
serve it at ``/healthz``. No state at import: the heartbeat table starts empty.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from . import metrics

#: Seconds without a daemon heartbeat before it counts as stuck.
HEARTBEAT_MAX_AGE = 120.0
#: Blocks a listener may trail the head (confirmations included) before it counts as behind.
MAX_LAG_BLOCKS = 64
#: Seconds the head may stay on one block on a live chain (dev chains: not checked).
HEAD_MAX_AGE = 180.0


@dataclass
class _Beat:
    at: float  # time.time()
    mono: float  # time.monotonic()
    lag: int | None
    push: bool | None = None  # subscribed over a WebSocket (True), polling (False), no feed (None)


_beats: dict[str, _Beat] = {}
_beats_lock = threading.Lock()


def beat(daemon: str, head_block: int | None = None, scanned_block: int | None = None,
         push: bool | None = None) -> None:
    """Record one round of ``daemon``'s loop (and its listener lag when both blocks are known;
    ``push``: whether its push feed is subscribed, None without one)."""
    lag = head_block - scanned_block if head_block is not None and scanned_block is not None else None
    now = _Beat(time.time(), time.monotonic(), max(0, lag) if lag is not None else None, push)
    with _beats_lock:
        _beats[daemon] = now
    metrics.set_heartbeat(daemon, now.at)
    if now.lag is not None:
        metrics.set_lag(daemon, now.lag)


def forget(daemon: str) -> None:
    """``daemon`` stopped on purpose: no longer expected to beat."""
    with _beats_lock:
        _beats.pop(daemon, None)


def _beats_now() -> dict[str, _Beat]:
    with _beats_lock:
        return dict(_beats)


@dataclass
class Check:
    """One line of the report."""

    ok: bool
    detail: str

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **extra}


class HealthCheck:
    """The node, the contract and the daemons of one process."""

    def __init__(
        self,
        rpc_url: str,
        *,
        chain_id: int | None = None,
        address: str | None = None,
        daemons: Iterable[str] | None = None,
        head_max_age: float | None = None,
        heartbeat_max_age: float = HEARTBEAT_MAX_AGE,
        max_lag_blocks: int = MAX_LAG_BLOCKS,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``daemons``: the names that must beat (None: whichever have beaten in this process).
        ``head_max_age``: None picks ``HEAD_MAX_AGE``, or 0 (off) on a dev chain id."""
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.address = address
        self.daemons = None if daemons is None else tuple(daemons)
        self.head_max_age = head_max_age
        self.heartbeat_max_age = heartbeat_max_age
        self.max_lag_blocks = max_lag_blocks
        self.timeout = timeout
        self.clock = clock
        self._w3: Any = None
        self._head: tuple[int, float] | None = None  # (block, clock() when first seen)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, daemons: Iterable[str] | None = None) -> "HealthCheck":
        """From ``Settings``: RPC_URL, CHAIN_ID, CONTRACT_ADDRESS and the HEALTH_* keys."""
        from .config import ConfigError

        def number(key: str, default: float | None) -> float | None:
            raw = settings.get(key)
            if raw in (None, ""):
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{key} must be a number of {'blocks' if 'LAG' in key else 'seconds'}, "
                                  f"not {raw!r}") from None
            if value < 0:
                raise ConfigError(f"{key} must not be negative")
            return value

        return cls(
            settings.rpc_url, chain_id=settings.expected_chain_id, address=settings.contract_address,
            daemons=daemons, head_max_age=number("HEALTH_HEAD_MAX_AGE", None),
            heartbeat_max_age=number("HEALTH_HEARTBEAT_MAX_AGE", HEARTBEAT_MAX_AGE) or HEARTBEAT_MAX_AGE,
            max_lag_blocks=int(number("HEALTH_MAX_LAG_BLOCKS", MAX_LAG_BLOCKS) or MAX_LAG_BLOCKS),
        )

    def __call__(self) -> tuple[int, dict[str, Any]]:
        """(200 or 503, the report)."""
        report = self.report()
        return (200 if report["status"] == "ok" else 503), report

    def report(self) -> dict[str, Any]:
        """``{"status": "ok"|"fail", "checks": {"node": …, "contract": …, "daemons": …}}``."""
        with self._lock:  # one probe at a time: the head tracking is shared
            node, w3 = self._node()
            checks = {"node": node, "contract": self._contract(w3), "daemons": self._daemons()}
        ok = all(c["ok"] for c in checks.values())
        return {"status": "ok" if ok else "fail", "checked_at": int(time.time()), "checks": checks}

    def _connect(self) -> Any:
        if self._w3 is None:
            from .chain import connect

            self._w3 = connect(self.rpc_url, timeout=self.timeout)
        return self._w3

    def _node(self) -> tuple[dict[str, Any], Any]:
        from .chain import redact_url
        from .config import DEV_CHAIN_IDS

        where = redact_url(self.rpc_url)
        try:
            w3 = self._connect()
            chain_id = int(w3.eth.chain_id)
            head = int(w3.eth.block_number)
        except Exception as exc:
            self._w3 = None
            self._head = None
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            return Check(False, f"the node at {where} is not answering; check RPC_URL and that the node is "
                                "running").as_dict(url=where, error=type(cause).__name__), None
        info = {"url": where, "chain_id": chain_id, "head": head}
        if self.chain_id is not None and chain_id != self.chain_id:
            return Check(False, f"the node at {where} is on chain {chain_id}, not {self.chain_id}; "
                                "fix RPC_URL or CHAIN_ID").as_dict(**info), None
        max_age = self.head_max_age
        if max_age is None:
            max_age = 0.0 if chain_id in DEV_CHAIN_IDS else HEAD_MAX_AGE
        now = self.clock()
        if self._head is None or self._head[0] != head:
            self._head = (head, now)
        still = now - self._head[1]
        if max_age and still > max_age:
            return Check(False, f"the head has stayed at block {head} for {still:.0f} s (limit {max_age:.0f} s); "
                                "is the node syncing?").as_dict(**info), w3
        return Check(True, f"chain {chain_id}, head at block {head}").as_dict(**info), w3

    def _contract(self, w3: Any) -> dict[str, Any]:
        if not self.address:
            return Check(False, "no contract address; set CONTRACT_ADDRESS (dr deploy writes it)").as_dict()
        if w3 is None:
            return Check(False, "not checked: the node is not well").as_dict(address=self.address)
        try:
            from web3 import Web3

            code = w3.eth.get_code(Web3.to_checksum_address(self.address))
        except ValueError:
            return Check(False, f"{self.address} is not an address; fix CONTRACT_ADDRESS").as_dict()
        except Exception as exc:
            return Check(False, f"could not read the code ({type(exc).__name__})").as_dict(address=self.address)
        if not code:
            return Check(False, f"no contract code at {self.address} on this chain; check CONTRACT_ADDRESS "
                                "and the network").as_dict(address=self.address)
        return Check(True, f"contract code at {self.address} ({len(code)} bytes)").as_dict(address=self.address)

    def _daemons(self) -> dict[str, Any]:
        beats = _beats_now()
        names = self.daemons if self.daemons is not None else tuple(sorted(beats))
        if not names:
            return Check(True, "no daemon runs in this process").as_dict(daemons={})
        now = time.monotonic()
        each: dict[str, dict[str, Any]] = {}
        for name in names:
            got = beats.get(name)
            if got is None:
                each[name] = Check(False, "no heartbeat yet: not started, or still starting").as_dict()
                continue
            age = now - got.mono
            extra = {"last_beat": int(got.at), "age_s": round(age, 1), "lag_blocks": got.lag,
                     "events": {True: "push", False: "polling (push socket down)", None: "polling"}[got.push]}
            if age > self.heartbeat_max_age:
                each[name] = Check(False, f"no heartbeat for {age:.0f} s (limit {self.heartbeat_max_age:.0f} s): "
                                          "the loop is stuck or the node is down").as_dict(**extra)
            elif got.lag is not None and got.lag > self.max_lag_blocks:
                each[name] = Check(False, f"the listener is {got.lag} blocks behind the head (limit "
                                          f"{self.max_lag_blocks})").as_dict(**extra)
            else:
                behind = "" if got.lag is None else f", {got.lag} block{'' if got.lag == 1 else 's'} behind"
                each[name] = Check(True, "beating" + behind).as_dict(**extra)
        bad = [n for n, c in each.items() if not c["ok"]]
        detail = f"{len(names) - len(bad)} of {len(names)} well" + (f"; not well: {', '.join(bad)}" if bad else "")
        return Check(not bad, detail).as_dict(daemons=each)
