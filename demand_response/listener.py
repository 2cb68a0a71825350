"""Contract event listening: ``eth_getLogs`` polling from a persisted cursor.

* The cursor (next block to read, plus the keys of recently processed logs) is saved
  atomically after every change, so a restarted daemon catches up on everything it missed.
* Every poll re-reads the last ``reorg_depth`` blocks. A log is handed over exactly once,
  keyed by (transaction hash, log index); a processed log that vanishes in a reorganisation
  is reported to ``on_removed`` and forgotten, so it is handled again if it is re-included.
* ``confirmations`` keeps the listener that many blocks behind the head (0 on a dev chain).
* RPC failures back off exponentially up to a cap, with one log line per attempt and a
  line when the endpoint is back; they never end the loop.
* Where the node offers a WebSocket, ``run`` also subscribes to new heads and the contract's
  logs (``push.PushFeed``) and polls as soon as one is pushed, instead of on its interval;
  the polling path above stays the only way events are read.

An idle poll is one ``eth_getBlockByNumber('latest')`` call; logs are fetched only when
the head moved, in ranges of at most ``max_range`` blocks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, TypeVar

from eth_utils import event_abi_to_log_topic
from web3 import Web3

from .artifacts import load_artifact
from .errors import (  # noqa: F401 - disk_error and describe_disk_error re-exported
    RetryLater,
    describe_disk_error,
    disk_error,
    is_connection_error,
    retry_cause,
)
from . import health, metrics
from .files import atomic_write_text

log = logging.getLogger(__name__)


def event_topics(*names: str) -> dict[str, str]:
    """``{topic0 hex: event name}`` for events of the DemandReduction ABI."""
    out = {}
    for item in load_artifact()["abi"]:
        if item["type"] == "event" and item["name"] in names:
            out["0x" + event_abi_to_log_topic(item).hex().removeprefix("0x")] = item["name"]
    missing = set(names) - set(out.values())
    if missing:
        raise ValueError(f"unknown events {sorted(missing)}")
    return out


@dataclass(frozen=True)
class Event:
    """A decoded log."""

    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int

    @property
    def key(self) -> str:
        """Exactly-once key: transaction hash and log index."""
        return f"{self.tx_hash}:{self.log_index}"


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


class Record(Protocol):
    """A typed part of a state file, owned by one writer: it knows its JSON form."""

    def to_json(self) -> Any:
        """The record as plain JSON data."""


R = TypeVar("R", bound=Record)


class StateFile:
    """A daemon's small JSON document, saved atomically, made of one typed record per
    writer (``section``): the listener's ``Cursor``, each consumer agent's notes. Each
    writer changes only its own record; ``save`` writes them all. ``data`` holds the
    untyped rest (the utility daemon's lists) and what was read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}
        self._sections: dict[tuple[str, ...], Record] = {}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self.data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                log.warning("state file %s is corrupt; starting from the configured start block", self.path)
                self.data = {}

    def section(self, key: tuple[str, ...], load: Callable[[Any], R]) -> R:
        """The typed record stored at ``key`` (a path of keys), built by ``load`` from what
        the file holds there (None if nothing); it is written back by every ``save``."""
        raw: Any = self.data
        for part in key:
            raw = raw.get(part) if isinstance(raw, dict) else None
        record = load(raw)
        self._sections[key] = record
        return record

    def save(self) -> None:
        """Write the document atomically, every record as it is now."""
        for key, record in list(self._sections.items()):
            place = self.data
            for part in key[:-1]:
                place = place.setdefault(part, {})
            place[key[-1]] = record.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


@dataclass
class Cursor:
    """The listener's record: the contract it reads, the next block to read, the last head
    seen, and the processed logs of the last blocks (key -> [block, block hash, event])."""

    address: str = ""
    next_block: int = 0
    head: list[Any] | None = None
    seen: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "Cursor":
        if not isinstance(data, dict):
            return cls()
        try:
            return cls(str(data.get("address", "")), int(data.get("next_block", 0)), data.get("head"),
                       dict(data.get("seen") or {}))
        except (TypeError, ValueError):
            return cls()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "next_block": self.next_block, "seen": dict(self.seen)}
        if self.head is not None:
            out["head"] = list(self.head)
        return out


class LogPoller:
    """Polls the logs of one contract for some events, from a persisted cursor."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        events: Iterable[str],
        state: StateFile,
        *,
        start_block: int = 0,
        confirmations: int = 0,
        reorg_depth: int = 12,
        max_range: int = 2000,
        label: str = "listener",
    ) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.topics = event_topics(*events)
        self._contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self.state = state
        self.confirmations = max(0, confirmations)
        self.reorg_depth = max(0, reorg_depth)
        self.max_range = max(1, max_range)
        self.label = label
        self.cursor = state.section(("cursor",), Cursor.from_json)
        if self.cursor.address.lower() != self.address.lower():
            self.cursor.address, self.cursor.next_block, self.cursor.head = self.address, start_block, None
            self.cursor.seen = {}
        self._head: tuple[int, str] | None = None
        #: Set by ``poll`` when the chain was reorganised below the last head; see ``_check_fork``.
        self.reorged = False
        self._watched: dict[int, str] = {}
        self._watch_lock = threading.Lock()
        #: The running push feed (``run`` starts one where the node offers a WebSocket).
        self.push: Any = None

    @property
    def next_block(self) -> int:
        """The first block not yet read."""
        return int(self.cursor.next_block)

    @property
    def _seen(self) -> dict[str, list]:
        return self.cursor.seen

    def _decode(self, raw: Any) -> Event:
        name = self.topics[_hex(raw["topics"][0])]
        decoded = getattr(self._contract.events, name)().process_log(raw)
        return Event(
            name, dict(decoded["args"]), int(raw["blockNumber"]), _hex(raw["blockHash"]),
            _hex(raw["transactionHash"]), int(raw["logIndex"]),
        )

    def poll(self) -> tuple[list[Event], list[tuple[str, list]]]:
        """One round: (new events in chain order, removed (key, [block, hash, name, args]) pairs).

        The cursor is advanced by ``commit`` once the caller has handled the events.
        """
        # A raw call: the head poll runs several times a second, web3's formatters cost CPU.
        reply = self.w3.provider.make_request("eth_getBlockByNumber", ["latest", False])
        if "error" in reply or not reply.get("result"):
            raise RetryLater(f"eth_getBlockByNumber failed: {reply.get('error')}")
        head = (int(reply["result"]["number"], 16), str(reply["result"]["hash"]))
        if head == self._head:
            return [], []
        self._check_fork(head)
        safe = head[0] - self.confirmations
        start = max(0, min(self.next_block, safe + 1) - self.reorg_depth)
        if safe < start:
            self._head = head
            return [], []
        raws: list[Any] = []
        for lo in range(start, safe + 1, self.max_range):
            hi = min(safe, lo + self.max_range - 1)
            raws += self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": lo, "toBlock": hi, "topics": [list(self.topics)]}
            )
        raws.sort(key=lambda r: (int(r["blockNumber"]), int(r["logIndex"])))
        events = [self._decode(r) for r in raws if not r.get("removed")]
        present = {e.key for e in events}
        removed = [
            (key, info) for key, info in self._seen.items()
            if start <= info[0] <= safe and key not in present
        ]
        moved = {e.key for e in events if e.key in self._seen and self._seen[e.key][1] != e.block_hash}
        if removed:
            log.warning(
                "%s: chain reorganised below block %d: %d processed event(s) gone; re-scanned from block %d",
                self.label, safe, len(removed), start,
            )
        if moved:
            log.debug("%s: %d processed event(s) now reported in another block", self.label, len(moved))
        for key in moved:
            event = next(e for e in events if e.key == key)
            self._seen[key][0:2] = [event.block_number, event.block_hash]
        self._pending_head = head
        self._pending_safe = safe
        return [e for e in events if e.key not in self._seen], removed

    def _check_fork(self, head: tuple[int, str]) -> None:
        """Notice a reorganisation below the last head seen, even one that removed no watched
        event (a block with only this daemon's own transaction) or a node that came back
        without its last blocks; ``run`` then calls ``on_reorg``. The last head is kept in the
        cursor, so this also works across a daemon restart."""
        last = self._head or tuple(self.cursor.head or ())
        with self._watch_lock:
            blocks = dict(self._watched)
        if last and head != tuple(last):
            blocks[int(last[0])] = str(last[1])
        gone = None
        for number, old_hash in sorted(blocks.items()):
            if number <= head[0]:
                block = self._block(number)
                if block and str(block["hash"]) == old_hash:
                    continue
            gone = (number, old_hash)
            break
        with self._watch_lock:
            for number in list(self._watched):
                if gone is not None or number < head[0] - self.reorg_depth:
                    del self._watched[number]
        if gone is not None:
            log.warning("%s: chain reorganised: block %d is no longer %s… (head now %d); re-checking recent work",
                        self.label, gone[0], gone[1][:12], head[0])
            self.reorged = True

    def _block(self, number: int) -> Any:
        reply = self.w3.provider.make_request("eth_getBlockByNumber", [hex(number), False])
        if "error" in reply:
            raise RetryLater(f"eth_getBlockByNumber failed: {reply.get('error')}")
        return reply.get("result")

    def watch(self, receipt: Any) -> None:
        """Check on later polls that the block of ``receipt`` (this daemon's own transaction)
        stays in the chain, for ``reorg_depth`` blocks; if it goes, ``run`` calls ``on_reorg``."""
        with self._watch_lock:
            self._watched[int(receipt["blockNumber"])] = _hex(receipt["blockHash"])

    def mark(self, event: Event) -> None:
        """Record ``event`` as processed (persisted on the next ``commit``)."""
        self._seen[event.key] = [event.block_number, event.block_hash, event.name]

    def forget(self, key: str) -> None:
        """Forget a processed event (it vanished in a reorg)."""
        self._seen.pop(key, None)

    def commit(self) -> None:
        """Advance the cursor past the last poll and save it (prunes old keys)."""
        safe = getattr(self, "_pending_safe", None)
        if safe is None:
            return
        cursor = self.cursor
        cursor.next_block = max(self.next_block, safe + 1)
        cursor.head = list(self._pending_head)
        horizon = cursor.next_block - self.reorg_depth - 1
        for key in [k for k, v in self._seen.items() if v[0] < horizon]:
            del self._seen[key]
        self.state.save()
        self._head = self._pending_head
        self._pending_safe = None

    def run(self, handle: Callable[[Event], None], stop: threading.Event, *args: Any, **kwargs: Any) -> None:
        """``_run`` (below); a listener that stops is forgotten by the health check (it did not
        stop beating: it ended)."""
        feed = self._start_push()
        try:
            self._run(handle, stop, *args, **kwargs)
        finally:
            if feed is not None:
                feed.close()
                self.push = None
            health.forget(self.label)

    def _start_push(self) -> Any:
        """The push feed (``push.PushFeed``) where the connection offers a WebSocket
        (``chain.connection.push_url_of``), started; None: polling only."""
        from .chain.connection import push_url_of
        from .push import PushFeed

        target = push_url_of(self.w3)
        if target is None:
            return None
        self.push = PushFeed(target[0], self.address, self.label, optional=target[1]).start()
        return self.push

    def _head_now(self) -> int | None:
        """The newest head known: the last polled, or a newer one pushed since (listener lag)."""
        polled = self._head[0] if self._head else None
        pushed = self.push.head if self.push is not None and self.push.live else None
        return max((h for h in (polled, pushed) if h is not None), default=None)

    def _backoff(self, stop: threading.Event, seconds: float) -> None:
        """After a failure: ``seconds``, cut short when the push socket comes back (the node is)."""
        if self.push is None:
            stop.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if self.push.wake.wait(min(0.25, max(0.0, deadline - time.monotonic()))) and self.push.live:
                return

    def _pause(self, stop: threading.Event, interval: float) -> None:
        """Between rounds: until a push arrives (``push.PushFeed.pause``), or ``interval``."""
        if self.push is not None:
            self.push.pause(stop, interval)
        else:
            stop.wait(interval)

    def _run(
        self,
        handle: Callable[[Event], None],
        stop: threading.Event,
        interval: float = 0.2,
        *,
        on_removed: Callable[[str, list], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        on_reorg: Callable[[], None] | None = None,
        max_backoff: float = 30.0,
        rpc_name: str = "RPC endpoint",
    ) -> None:
        """Poll until ``stop`` is set; ``handle`` each new event once, in chain order.

        A handler that raises a connection error or ``RetryLater`` leaves its event for the
        next round (after a backoff); any other exception is logged in one line and the
        event counts as processed. ``on_reorg`` is called once after a reorganisation below
        the last head (see ``_check_fork``), before the round's events are handled.
        """
        backoff = 0.0
        down_since: float | None = None
        while not stop.is_set():
            try:
                if self.push is not None:
                    self.push.wake.clear()  # a push from now on means another round
                events, removed = self.poll()
                if self.reorged:
                    if on_reorg is not None:
                        try:
                            on_reorg()
                        except Exception as exc:
                            if is_connection_error(exc):
                                raise
                            log.error("%s: re-checking after the reorganisation failed: %s: %s",
                                      self.label, type(exc).__name__, exc)
                    self.reorged = False
                for key, info in removed:
                    self.forget(key)
                    if on_removed is not None:
                        on_removed(key, info)
                for event in events:
                    if stop.is_set():
                        break
                    try:
                        handle(event)
                    except Exception as exc:
                        if is_connection_error(exc) or disk_error(exc) is not None:
                            raise
                        log.error("%s: %s for %s in block %d failed: %s", self.label, type(exc).__name__,
                                  event.name, event.block_number, exc)
                    self.mark(event)
                else:
                    if events or removed or getattr(self, "_pending_safe", None) is not None:
                        self.commit()
                if on_idle is not None:
                    on_idle()
                health.beat(self.label, self._head_now(), self.next_block - 1,
                            None if self.push is None or not self.push.offered else self.push.live)
                if down_since is not None:
                    log.warning("%s: %s is back after %.1f s; caught up to block %d",
                                self.label, rpc_name, time.monotonic() - down_since, self.next_block - 1)
                    down_since = None
                backoff = 0.0
                self._pause(stop, interval)
            except Exception as exc:
                disk = disk_error(exc)
                if disk is None and not is_connection_error(exc):
                    raise
                self._head = None
                self._pending_safe = None
                backoff = min(max_backoff, max(interval, backoff * 2 or 0.5))
                retry = retry_cause(exc)
                metrics.rpc_retry("disk" if disk is not None else "dropped" if retry is not None else "unreachable")
                if disk is not None:  # a full or read-only disk: keep the event and retry
                    log.error("%s: %s; retrying in %.1f s", self.label, describe_disk_error(disk), backoff)
                elif retry is not None:  # e.g. our transaction was dropped: do that work again
                    if not stop.is_set():
                        log.warning("%s: %s; retrying in %.1f s", self.label, retry, backoff)
                else:
                    if down_since is None:
                        down_since = time.monotonic()
                    log.warning("%s: %s unreachable (%s); retrying in %.1f s", self.label, rpc_name,
                                type(exc).__name__, backoff)
                self._backoff(stop, backoff)
