"""The utility's bid relay (``RELAY_LISTEN``): households sign their open bids off chain
(EIP-712, ``submitSignedBids``) and POST them here; the utility daemon checks each entry,
queues it, and each round sends the queued entries of a request in batches, paying the gas.
A relayed household sends no transaction at all (winners are paid by ``claimAndPay``).

``POST /relay/bids`` takes ``{"requestId", "bidder", "watts", "pricesPerKWh", "signature"}``
and answers 202 ``{"queued": true, ...}`` or an error ``{"error": "one line"}``: 400 (not a
well-formed entry), 403 (a bidder not on ``RELAY_ALLOW``'s list), 404 (another path), 409 (this bidder already has an entry for this
request), 411/413 (no or too large a body), 422 (the entry is refused: bad signature, request
not open, sealed, too late, or the contract's own check fails), 503 (queue full, or the node
cannot be reached). ``GET /relay`` answers the
relayer's address, the contract, the chain id and how many entries are queued.

A queued entry is never lost on a failed send: it is sent again the next round, and dropped
(with a log line) only once its request's bidding has closed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from eth_utils import is_hex_address, to_checksum_address

from . import metrics
from .contract import (MAX_SIGNED_ENTRIES, SKIP_REASONS, DemandReduction, Status, TX_GAS_CAP, decode_revert,
                       signed_bid_gas_limit)
from .errors import ChainError, ConfigError, TransactionFailed, UserError, is_connection_error
from .market import MAX_BIDS_PER_CALL

log = logging.getLogger("demand_response.relay")

#: The path households POST their signed bids to.
RELAY_PATH = "/relay/bids"
#: The largest request body read (64 bids as decimal integers and a signature fit in 8 KiB).
MAX_BODY_BYTES = 16 * 1024
#: Seconds a client has to send its request (a slow client cannot hold a thread).
CLIENT_TIMEOUT_S = 5.0
#: An entry must arrive at least this long before bidding closes: it has to wait for the next
#: round and a block.
MIN_SECONDS_LEFT = 2
#: Entries per batch at most: the contract's cap.
DEFAULT_BATCH_ENTRIES = MAX_SIGNED_ENTRIES
#: Most entries waiting in the queue (all requests); more are answered 503 until a round sends some.
MAX_QUEUED = 10_000
#: Most connections handled at once; more are closed unanswered (a flood cannot exhaust threads).
MAX_CONNECTIONS = 64
#: A batch whose estimate is above this share of ``TX_GAS_CAP`` is split in two.
_CAP_SHARE = 0.9


class RelayRefused(UserError):
    """An entry the relay will not queue: ``status`` (HTTP) and one line for the household."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RelayEntry:
    """One household's signed bids for one request, as received."""

    request_id: int
    bidder: str
    watts: tuple[int, ...]
    prices: tuple[int, ...]
    signature: bytes
    received_at: float = field(default_factory=time.time, compare=False)

    @property
    def struct(self) -> tuple[str, list[int], list[int], bytes]:
        """The contract's ``SignedBids`` tuple."""
        return (self.bidder, list(self.watts), list(self.prices), self.signature)

    def as_json(self) -> dict[str, Any]:
        """The entry as ``relay.sign_bids`` makes it (what ``submit_signed_bids`` takes)."""
        return {"bidder": self.bidder, "watts": list(self.watts), "pricesPerKWh": list(self.prices),
                "signature": "0x" + self.signature.hex()}


@dataclass(frozen=True)
class BatchResult:
    """What one batch transaction did."""

    request_id: int
    entries: int
    placed: int
    skipped: int
    gas: int
    tx: str

    @property
    def gas_per_entry(self) -> int:
        return self.gas // max(1, self.entries)


def parse_entry(body: bytes) -> RelayEntry:
    """The entry in a request body, or ``RelayRefused`` (400) naming what is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RelayRefused(400, "the body is not JSON; send {\"requestId\", \"bidder\", \"watts\", "
                                "\"pricesPerKWh\", \"signature\"}") from None
    if not isinstance(data, dict):
        raise RelayRefused(400, "the body must be a JSON object")
    missing = [k for k in ("requestId", "bidder", "watts", "pricesPerKWh", "signature") if k not in data]
    if missing:
        raise RelayRefused(400, f"missing field(s): {', '.join(missing)}")
    rid = _uint(data["requestId"], "requestId")
    bidder = data["bidder"]
    if not isinstance(bidder, str) or not is_hex_address(bidder):
        raise RelayRefused(400, "bidder must be a 0x-prefixed 20-byte hex address")
    watts, prices = data["watts"], data["pricesPerKWh"]
    if not isinstance(watts, list) or not isinstance(prices, list) or not watts or len(watts) != len(prices):
        raise RelayRefused(400, "watts and pricesPerKWh must be non-empty lists of the same length")
    if len(watts) > MAX_BIDS_PER_CALL:
        raise RelayRefused(400, f"at most {MAX_BIDS_PER_CALL} bids per entry, got {len(watts)}")
    signature = data["signature"]
    try:
        raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 65:
        raise RelayRefused(400, "signature must be 65 bytes, 0x-prefixed hex")
    return RelayEntry(rid, to_checksum_address(bidder), tuple(_uint(w, "watts") for w in watts),
                      tuple(_uint(p, "pricesPerKWh") for p in prices), raw)


def _uint(value: Any, name: str) -> int:
    """A uint256 from JSON (an integer, or a decimal string for big values)."""
    if isinstance(value, bool):
        raise RelayRefused(400, f"{name} must hold non-negative integers")
    if isinstance(value, str) and value.isdigit() and len(value) <= 78:
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < 2**256:
        raise RelayRefused(400, f"{name} must hold non-negative integers")
    return value


class BidRelay:
    """The queue of signed entries: checked on the way in (``offer``, any thread), sent in
    batches by the daemon's own thread (``flush``), which owns the relayer's signer."""

    def __init__(self, dr: DemandReduction, relayer: str, chain_id: int, *,
                 max_entries: int = DEFAULT_BATCH_ENTRIES, clock: Callable[[], float] = time.time,
                 allow: frozenset[str] | None = None) -> None:
        self.dr = dr
        #: The households whose entries this relay pays for (``RELAY_ALLOW``); None: every
        #: bidder the contract takes (on a market with enrolment, the enrolled ones).
        self.allow = None if allow is None else frozenset(to_checksum_address(a) for a in allow)
        self.chain_id = int(chain_id)
        self.relayer = to_checksum_address(relayer)
        self.max_entries = max(1, min(int(max_entries), MAX_SIGNED_ENTRIES))
        self.clock = clock
        self._lock = threading.Lock()
        #: request id → bidder → entry, in arrival order.
        self._queued: dict[int, dict[str, RelayEntry]] = {}
        #: (request id, bidder) of every entry accepted in this run (one per bidder per request).
        self._taken: set[tuple[int, str]] = set()
        self._deadlines: dict[int, int] = {}
        #: Every batch sent in this run.
        self.batches: list[BatchResult] = []

    # -- the way in ----------------------------------------------------------------------

    def pending(self) -> int:
        """How many entries wait to be sent."""
        with self._lock:
            return sum(len(v) for v in self._queued.values())

    def offer(self, entry: RelayEntry) -> dict[str, Any]:
        """Check ``entry`` and queue it; ``RelayRefused`` (409, 422) says why not."""
        key = (entry.request_id, entry.bidder)
        if self.allow is not None and entry.bidder not in self.allow:
            raise RelayRefused(403, f"{entry.bidder} is not one of the households this relay pays for "
                                    "(RELAY_ALLOW); submit the signed bids yourself")
        with self._lock:
            if key in self._taken:
                raise RelayRefused(409, f"{entry.bidder} already has an entry for request {entry.request_id}; "
                                        "the contract takes one signed submission per bidder per request")
        if self.pending() >= MAX_QUEUED:
            raise RelayRefused(503, f"the relay's queue is full ({MAX_QUEUED:,} entries); try again in a few "
                                    "seconds or submit the signed bids yourself")
        self._check(entry)
        with self._lock:
            if key in self._taken:  # another thread queued the same bidder meanwhile
                raise RelayRefused(409, f"{entry.bidder} already has an entry for request {entry.request_id}; "
                                        "the contract takes one signed submission per bidder per request")
            self._taken.add(key)
            self._queued.setdefault(entry.request_id, {})[entry.bidder] = entry
            queued = len(self._queued[entry.request_id])
        log.info("relay: request %d: queued %s's %d bid(s) (%d entr%s queued for it)", entry.request_id,
                 entry.bidder[:10], len(entry.watts), queued, "y" if queued == 1 else "ies")
        return {"queued": True, "requestId": entry.request_id, "bidder": entry.bidder,
                "biddingDeadline": self._deadlines.get(entry.request_id)}

    def _check(self, entry: RelayEntry) -> None:
        """The signature, the request's state and the contract's own check of this one entry."""
        from .relay import SignedBidsError, recover_bidder

        rid = entry.request_id
        try:
            signer: str | None = recover_bidder(entry.as_json(), self.dr.address, self.chain_id, rid)
        except SignedBidsError:
            signer = None
        if signer is None or to_checksum_address(signer) != entry.bidder:
            raise RelayRefused(422, f"bad signature: it is not {entry.bidder}'s signature of these bids for "
                                    f"request {rid} on this contract and chain (or it is malleable)")
        try:
            if rid < 1 or rid > self.dr.request_count():
                raise RelayRefused(422, f"request {rid} does not exist on this contract")
            info = self.dr.get_request(rid)
            if info.status != Status.OPEN:
                raise RelayRefused(422, f"request {rid} is {info.status.name.lower()}, not open for bids")
            if self.dr.terms_of(rid).sealed:
                raise RelayRefused(422, f"request {rid} takes sealed bids (commit, reveal), which are not relayed")
            now = self._now()
            if now + MIN_SECONDS_LEFT > info.bidding_deadline:
                raise RelayRefused(422, f"bidding on request {rid} closes in {max(0, info.bidding_deadline - now)} s: "
                                        "too late to relay; submit the signed bids yourself")
            self._deadlines[rid] = info.bidding_deadline
            placed = self._call(rid, [entry])
        except RelayRefused:
            raise
        except TransactionFailed as exc:
            raise RelayRefused(422, f"the contract refuses this entry: {exc}") from None
        except Exception as exc:
            if is_connection_error(exc):
                raise RelayRefused(503, "the relay cannot reach its chain node now; try again or submit "
                                        "the signed bids yourself") from None
            raise
        if not placed:
            raise RelayRefused(409, f"the contract would skip this entry (bids already placed for "
                                    f"{entry.bidder} on request {rid}, or it may not bid there)")

    def _now(self) -> int:
        chain_now = int(self.dr.w3.eth.get_block("latest")["timestamp"])
        return max(chain_now, int(self.clock()))

    def _call(self, rid: int, entries: list[RelayEntry]) -> int:
        """``eth_call`` of ``submitSignedBids`` from the relayer: how many would be placed
        (a contract error as ``TransactionFailed``)."""
        call = self.dr.functions.submitSignedBids(rid, [e.struct for e in entries])
        try:
            return int(call.call({"from": self.relayer}))
        except Exception as exc:
            decoded = decode_revert(exc)
            if decoded is not None:
                raise decoded from exc
            raise

    # -- the way out ----------------------------------------------------------------------

    def flush(self, signer: Any) -> list[BatchResult]:
        """Send every queued entry, request by request, in batches under the gas cap; an entry
        whose request closed is dropped (one line), a failed send is kept for the next round."""
        with self._lock:
            snapshot = {rid: list(by.values()) for rid, by in self._queued.items() if by}
        done: list[BatchResult] = []
        if not snapshot:
            return done
        now = self._now()
        for rid, entries in sorted(snapshot.items()):
            deadline = self._deadlines.get(rid)
            if deadline is not None and now > deadline:
                self._forget(rid, entries)
                metrics.relay_dropped(len(entries))
                log.warning("relay: request %d: bidding closed before %d queued entr%s could be sent; dropped (%s)",
                            rid, len(entries), "y" if len(entries) == 1 else "ies",
                            ", ".join(e.bidder[:10] for e in entries))
                continue
            entries = self._unplaced(rid, entries)
            for batch in self._batches(entries):
                try:
                    done.extend(self._send(signer, rid, batch))
                except Exception as exc:
                    if is_connection_error(exc):
                        log.warning("relay: request %d: the node is unreachable; the queued entries are kept for "
                                    "the next round", rid)
                        return done
                    log.error("relay: request %d: sending a batch failed (%s: %s); kept for the next round",
                              rid, type(exc).__name__, exc)
        self.batches.extend(done)
        return done

    def _unplaced(self, rid: int, entries: list[RelayEntry]) -> list[RelayEntry]:
        """``entries`` less those whose signed bids are on chain already (the household, short of
        time, placed its entry itself): sending them would cost the utility ~38,000 gas each for
        a skip. They are forgotten with one line."""
        placed = [e for e in entries if self.dr.signed_bids_used(e.bidder, rid)]
        if placed:
            self._forget(rid, placed)
            log.info("relay: request %d: %s already on chain (placed by the household itself); not sent", rid,
                     ", ".join(e.bidder[:10] for e in placed))
        return [e for e in entries if e not in placed]

    def _batches(self, entries: list[RelayEntry]) -> list[list[RelayEntry]]:
        """``entries`` in arrival order, cut into batches of at most ``max_entries`` whose
        fixed gas bound (``signed_bid_gas_limit``: 64-bid entries weigh far more than 1-bid
        ones) stays under the share of the per-transaction cap."""
        batches: list[list[RelayEntry]] = [[]]
        for entry in entries:
            batch = batches[-1]
            if batch and (len(batch) >= self.max_entries or signed_bid_gas_limit(
                    [len(e.watts) for e in batch] + [len(entry.watts)]) > TX_GAS_CAP * _CAP_SHARE):
                batches.append([])
            batches[-1].append(entry)
        return [b for b in batches if b]

    def _send(self, signer: Any, rid: int, entries: list[RelayEntry]) -> list[BatchResult]:
        """One batch (split in two while its estimate is above the cap's share)."""
        call = self.dr.functions.submitSignedBids(rid, [e.struct for e in entries])
        try:
            estimate = int(call.estimate_gas({"from": signer.address}))
        except Exception as exc:
            if is_connection_error(exc):
                raise
            return self._weed(signer, rid, entries, exc)
        if estimate > TX_GAS_CAP * _CAP_SHARE and len(entries) > 1:
            half = len(entries) // 2
            return self._send(signer, rid, entries[:half]) + self._send(signer, rid, entries[half:])
        gas = min(int(estimate * 1.2) + 10_000, TX_GAS_CAP)
        metrics.bids_sent(sum(len(e.watts) for e in entries))
        receipt = self.dr.submit_signed_bids(signer, rid, [e.as_json() for e in entries], gas=gas)
        placed, skipped = self._outcome(receipt)
        metrics.bids_mined(sum(len(e.watts) for e in entries if e.bidder in set(placed)))
        used = int(receipt["gasUsed"])
        tx = "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
        self._forget(rid, entries)
        result = BatchResult(rid, len(entries), len(placed), len(skipped), used, tx)
        metrics.relay_batch(result.placed, result.skipped, used)
        log.info("relay: request %d: sent %d entr%s: %d placed, %d skipped, %s gas (%s gas per entry), tx %s…",
                 rid, len(entries), "y" if len(entries) == 1 else "ies", result.placed, result.skipped,
                 f"{used:,}", f"{result.gas_per_entry:,}", tx[:12])
        for bidder, reason in skipped:
            log.info("relay: request %d: the contract skipped %s's entry (%s)", rid, bidder[:10], reason)
        return [result]

    def _weed(self, signer: Any, rid: int, entries: list[RelayEntry], exc: Exception) -> list[BatchResult]:
        """A batch whose estimate reverted: check each entry alone, drop (with a line) the ones
        the contract refuses, and send the rest."""
        good: list[RelayEntry] = []
        for entry in entries:
            try:
                self._call(rid, [entry])
                good.append(entry)
            except TransactionFailed as refused:
                self._forget(rid, [entry])
                metrics.relay_dropped(1)
                log.warning("relay: request %d: dropped %s's entry: the contract refuses it now (%s)", rid,
                            entry.bidder[:10], refused)
        if len(good) == len(entries):  # no entry to blame: the batch as a whole (its size?) or the node
            if len(entries) > 1:
                half = len(entries) // 2
                return self._send(signer, rid, entries[:half]) + self._send(signer, rid, entries[half:])
            raise ChainError(f"estimating a batch of {len(entries)} entries failed: {exc}")
        return self._send(signer, rid, good) if good else []

    def _outcome(self, receipt: Any) -> tuple[list[str], list[tuple[str, str]]]:
        """Bidders placed (``BidsSubmitted``) and skipped (``SignedBidsSkipped``, with the reason)."""
        events = self.dr.events_in(receipt, "BidsSubmitted")
        placed = [str(e["args"]["bidder"]) for e in events]
        skipped = [(who, SKIP_REASONS.get(reason, f"reason {reason}"))
                   for who, reason in self.dr.skipped_signed_bids(receipt)]
        return placed, skipped

    def _forget(self, rid: int, entries: list[RelayEntry]) -> None:
        with self._lock:
            queue = self._queued.get(rid, {})
            for entry in entries:
                if queue.get(entry.bidder) is entry:
                    del queue[entry.bidder]
            if not queue:
                self._queued.pop(rid, None)




# -- the HTTP endpoint ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """``POST /relay/bids`` and ``GET /relay``; JSON in, JSON out, one line per error."""

    server: "_RelayHttpServer"
    timeout = CLIENT_TIMEOUT_S
    server_version = "dr-relay"
    sys_version = ""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path.split("?")[0].rstrip("/") != "/relay":
            self._answer(404, {"error": f"no such path {self.path[:64]!r}; POST signed bids to {RELAY_PATH}"})
            return
        relay = self.server.relay
        self._answer(200, {"relayer": relay.relayer, "contract": relay.dr.address,
                           "chainId": self.server.chain_id, "queued": relay.pending(), "path": RELAY_PATH})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != RELAY_PATH:
            self._answer(404, {"error": f"no such path {self.path[:64]!r}; POST signed bids to {RELAY_PATH}"})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._answer(411, {"error": "a Content-Length header is needed"})
            return
        if int(length) > MAX_BODY_BYTES:
            self._answer(413, {"error": f"the body is {int(length):,} bytes; at most {MAX_BODY_BYTES:,} are read"})
            return
        try:
            body = self.rfile.read(int(length))
            entry = parse_entry(body)
            answer = self.server.relay.offer(entry)
        except RelayRefused as exc:
            log.info("relay: refused an entry from %s: %s (%d)", self.client_address[0], exc, exc.status)
            self._answer(exc.status, {"error": str(exc)})
            return
        except OSError:
            return  # the client went away (or was too slow)
        except Exception as exc:  # never a traceback to the household, never a dead thread
            log.error("relay: %s: %s", type(exc).__name__, exc)
            self._answer(500, {"error": "the relay failed to check this entry; submit the signed bids yourself"})
            return
        self._answer(202, answer)

    def log_message(self, format: str, *args: Any) -> None:  # the relay's own lines say what matters
        return


class _RelayHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    relay: BidRelay
    chain_id: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: closed, not queued behind the others
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class RelayServer:
    """The relay's HTTP endpoint, served on its own thread until ``close``."""

    def __init__(self, relay: BidRelay, host: str = "127.0.0.1", port: int = 0, chain_id: int = 0) -> None:
        try:
            self._server = _RelayHttpServer((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen for relayed bids on {host}:{port} ({exc.strerror or exc}); "
                              "choose another RELAY_LISTEN or leave it empty") from None
        self._server.relay = relay
        self._server.chain_id = chain_id
        self.relay = relay
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def parse_listen(value: str) -> tuple[str, int]:
    """``RELAY_LISTEN`` (``host:port``, or ``:port`` / ``port`` for 127.0.0.1) as (host, port);
    ``ConfigError`` (one line) when it is not one."""
    text = value.strip()
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"RELAY_LISTEN={value!r} is not host:port (e.g. 127.0.0.1:8546); fix it or leave it empty")
    return host, int(port)


def relay_allow(value: str | None, registration_required: bool) -> frozenset[str] | None:
    """``RELAY_ALLOW``: whose signed entries the relay pays for. ``anyone``: None (every bidder
    the contract takes); a file (``@FILE`` or a path) of addresses, one per line, ``#``
    comments: that set. Empty: None on a market with enrolment (the contract takes enrolled
    households only), else ``ConfigError``: on an open market anyone who can reach the relay
    could make the utility pay ~45,000-62,000 gas per entry signed with a throwaway key."""
    text = (value or "").strip()
    if text.lower() == "anyone":
        return None
    if not text:
        if registration_required:
            return None
        raise ConfigError("RELAY_LISTEN is set, but RELAY_ALLOW is not and this market takes bids from anyone: "
                          "anyone who reaches the relay could make the utility pay the gas of bids signed with "
                          "throwaway keys. Set RELAY_ALLOW to a file of household addresses (one per line), or "
                          "RELAY_ALLOW=anyone to accept that")
    path = text.removeprefix("@")
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as exc:
        raise ConfigError(f"RELAY_ALLOW={value!r}: cannot read {path} ({exc.strerror or exc}); give a file of "
                          "household addresses, one per line, or 'anyone'") from None
    allowed: set[str] = set()
    for number, line in enumerate(lines, 1):
        address = line.split("#", 1)[0].strip()
        if not address:
            continue
        if not is_hex_address(address):
            raise ConfigError(f"RELAY_ALLOW file {path}, line {number}: {address!r} is not an address; "
                              "one 0x address per line")
        allowed.add(to_checksum_address(address))
    return frozenset(allowed)


def start_relay(dr: DemandReduction, relayer: str, listen: str, chain_id: int,
                allow: frozenset[str] | None = None) -> RelayServer:
    """A ``BidRelay`` for ``relayer`` served on ``listen`` (``RELAY_LISTEN``), paying for the
    entries of ``allow`` only (``relay_allow``; None: every bidder the contract takes)."""
    host, port = parse_listen(listen)
    server = RelayServer(BidRelay(dr, relayer, chain_id, allow=allow), host, port, chain_id)
    log.info("relay: households' signed bids are taken at %s%s; the utility pays their gas", server.url, RELAY_PATH)
    return server
