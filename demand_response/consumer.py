"""The consumer bidding daemon.

One ``ConsumerAgent`` is one household account. A ``ConsumerService`` runs one event
listener for the contract and hands every event to its agents: one agent for
``dr consumer run``, N for ``dr consumer fleet -n N``; the logic is the same.

For each request an agent hears while bidding is open, it loads its offers (``bids.json``
or gridsim), snaps them up to the request's price grid, skips those above the cap, and
submits the rest (at most 64 per transaction). Before bidding it asks the contract whether
it already bid there, so a restarted daemon never bids twice. When the request is settled
it claims its winning bids, withdraws (unless disabled) and appends one record to
``results.json``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .bids import BidsError, Offer, chunks, from_pairs, load_bids, prepare
from .chain import Signer, TransactionFailed
from .contract import DemandReduction, RequestInfo, Status
from .market import PricingRule
from .listener import Event, LogPoller, StateFile, is_connection_error
from .results import ResultsFile

log = logging.getLogger("demand_response.consumer")

EVENTS = ("ReductionRequested", "WinnersSelected", "RequestCancelled")
BidsProvider = Callable[[RequestInfo], Sequence[Offer]]


def eth(wei: int) -> str:
    """Wei as a short ETH string."""
    return f"{wei / 10**18:.6f}"


def _short(tx_hash: Any) -> str:
    text = tx_hash.hex() if isinstance(tx_hash, (bytes, bytearray)) else str(tx_hash)
    text = text if text.startswith("0x") else "0x" + text
    return text


def file_bids(path: str | Path, agent_index: int = 0) -> BidsProvider:
    """Offers from a bids file, re-read for every request (edits apply to the next request)."""

    def provide(_info: RequestInfo) -> Sequence[Offer]:
        return load_bids(path).for_agent(agent_index)

    return provide


def gridsim_bids(household_index: int = 0, seed: int = 0, n_households: int | None = None) -> BidsProvider:
    """Offers from the household simulation, fitted to each request (imported lazily)."""
    try:
        from .gridsim import bids_for_request
    except Exception as exc:  # ImportError, or numpy missing inside gridsim
        raise BidsError(
            f"--bids-source gridsim needs demand_response.gridsim ({type(exc).__name__}: {exc}); "
            "install the 'sim' extra (pip install '.[sim]') or use --bids-source file"
        ) from None

    def provide(info: RequestInfo) -> Sequence[Offer]:
        request = {"event_start": info.event_start, "event_end": info.event_end,
                   "max_price_wei_per_kwh": info.max_price}
        pairs = bids_for_request(request, household_index=household_index, seed=seed, n_households=n_households)
        return from_pairs(pairs, "gridsim")

    return provide


class ConsumerAgent:
    """One consumer account: bids on open requests and collects its outcomes."""

    def __init__(
        self,
        dr: DemandReduction,
        signer: Signer,
        bids: BidsProvider,
        results: ResultsFile,
        notes: dict[str, Any],
        *,
        chain_id: int,
        auto_withdraw: bool = True,
        label: str | None = None,
    ) -> None:
        self.dr = dr
        self.signer = signer
        self.bids = bids
        self.results = results
        self.notes = notes.setdefault("requests", {})
        self.chain_id = chain_id
        self.auto_withdraw = auto_withdraw
        self.label = label or signer.label
        self.address = signer.address

    def _say(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        log.log(level, f"{self.label}: {message}", *args)

    # -- events ---------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Handle one contract event."""
        rid = int(event.args["requestId"])
        if event.name == "ReductionRequested":
            self.notes.setdefault(str(rid), {})["requested_block"] = event.block_number
            self.handle_request(rid, event.args)
        elif event.name == "WinnersSelected":
            self.handle_settled(rid, event)
        elif event.name == "RequestCancelled" and str(rid) in self.notes:
            self._record_cancelled(rid)

    def on_removed(self, key: str, info: list) -> None:
        """A processed event vanished in a reorg; the contract is re-read when it comes back."""
        self.signer.resync()  # our own transactions may have been dropped with it
        self._say("event %s (%s) was removed by a chain reorganisation", key[:18] + "…", info[2] if len(info) > 2 else "?",
                  level=logging.WARNING)

    # -- bidding ----------------------------------------------------------------------------

    def handle_request(self, rid: int, args: dict[str, Any] | None = None) -> None:
        """Bid on request ``rid`` if it is open, bidding has not closed and we have not bid.

        A fresh event (deadline still ahead) carries everything needed, so the fast path
        makes no extra calls; an old one is checked against the contract first.
        """
        now = int(time.time())
        if args is not None and int(args["biddingDeadline"]) > now:
            info = RequestInfo(
                rid, Status.OPEN, PricingRule(int(args["pricingRule"])), int(args["targetWatts"]),
                int(args["eventStart"]), int(args["eventEnd"]), int(args["biddingDeadline"]),
                int(args["maxPriceWeiPerKWh"]), int(args["maxPriceWeiPerKWh"]) // 128, int(args["budget"]),
                0, 0, 0, 0, 0, 0, 0,
            )
        else:
            try:
                info = self.dr.get_request(rid)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                self._say("request %d no longer exists on chain (reorganised away?)", rid, level=logging.WARNING)
                return
            if info.status == Status.SETTLED:
                self.handle_settled(rid)
                return
            if info.status != Status.OPEN:
                return
            now = max(now, int(self.dr.w3.eth.get_block("latest")["timestamp"]))
        self._say(
            "request %d heard: %.3f kW wanted, cap %s ETH/kWh, bidding closes in %d s",
            rid, info.target_watts / 1000, eth(info.max_price), info.bidding_deadline - now,
        )
        requested_block = self.notes.get(str(rid), {}).get("requested_block", 0)
        mine = self.dr.bid_ids_logged(rid, self.address, from_block=requested_block)
        if mine:
            self._say("already bid on request %d (%d bids on chain); not bidding again", rid, len(mine))
            return
        if now >= info.bidding_deadline:
            self._say("bidding on request %d has closed; not bidding", rid)
            return
        try:
            offers = list(self.bids(info))
        except BidsError as exc:
            self._say("not bidding on request %d: %s", rid, exc, level=logging.ERROR)
            return
        ready = prepare(offers, info.max_price)
        for offer, reason in ready.skipped:
            self._say("skipping bid %.3f kW at %s ETH/kWh: %s", offer.kw, eth(offer.price), reason,
                      level=logging.WARNING)
        if not ready.submit:
            self._say("no bids at or below the cap for request %d; not bidding", rid)
            return
        txs = []
        for group in chunks(ready.submit):
            try:
                receipt = self.dr.submit_bids(self.signer, rid, [o.watts for o in group], [o.price for o in group])
            except TransactionFailed as exc:
                self._say("bid on request %d refused: %s", rid, exc, level=logging.ERROR)
                if exc.error == "NotEnrolled":
                    self._say("this contract needs enrolment: run `dr register` first", level=logging.ERROR)
                break
            txs.append(_short(receipt["transactionHash"]))
        if not txs:
            return
        note = self.notes.setdefault(str(rid), {})
        note.update(bid_txs=txs, bid_at=int(time.time()),
                    offers=[[o.watts, o.price] for o in ready.submit], skipped=len(ready.skipped))
        self._say(
            "bid %d offer(s), %.3f kW, prices %s ETH/kWh, on request %d (tx %s)",
            len(ready.submit), sum(o.watts for o in ready.submit) / 1000,
            "/".join(eth(o.price) for o in ready.submit), rid, ", ".join(t[:12] + "…" for t in txs),
        )

    # -- outcomes ---------------------------------------------------------------------------

    def handle_settled(self, rid: int, event: Event | None = None) -> None:
        """Claim, withdraw and record the outcome of a settled request we bid in."""
        if self.results.find(self.chain_id, self.dr.address, rid, self.address):
            return
        info = self.dr.get_request(rid)
        if info.status != Status.SETTLED:
            return
        mine = self.dr.bids_of(rid, self.address)
        if not mine:
            return
        accepted = sum(b.accepted_watts for b in mine)
        payout = sum(b.payout for b in mine)
        self._say(
            "request %d settled at %s ETH/kWh: won %.3f kW of %.3f kW offered, payout %s ETH",
            rid, eth(info.clearing_price), accepted / 1000, sum(b.watts for b in mine if not b.cancelled) / 1000,
            eth(payout),
        )
        claim_tx = None
        to_claim = [b.bid_id for b in mine if b.accepted_watts and not b.claimed]
        if to_claim:
            receipt = self.dr.claim(self.signer, rid, to_claim)
            claim_tx = _short(receipt["transactionHash"])
            self._say("claimed %d winning bid(s) on request %d (tx %s…)", len(to_claim), rid, claim_tx[:12])
        withdraw_tx, withdrawn = None, 0
        if self.auto_withdraw:
            owed = self.dr.owed(self.address)
            if owed:
                receipt = self.dr.withdraw(self.signer)
                withdraw_tx, withdrawn = _short(receipt["transactionHash"]), owed
                self._say("withdrew %s ETH (tx %s…)", eth(owed), withdraw_tx[:12])
        note = self.notes.get(str(rid), {})
        settled_at = None
        if event is not None:
            settled_at = int(self.dr.w3.eth.get_block(event.block_number)["timestamp"])
        record = {
            "chain_id": self.chain_id,
            "contract": self.dr.address,
            "request_id": rid,
            "account": self.address,
            "label": self.label,
            "status": "won" if accepted else "lost",
            "rule": info.rule.name.lower(),
            "target_kw": info.target_watts / 1000,
            "bids": [{"bid_id": b.bid_id, "watts": b.watts, "price_wei_per_kwh": b.price,
                      "cancelled": b.cancelled, "accepted_watts": b.accepted_watts} for b in mine],
            "offered_kw": sum(b.watts for b in mine if not b.cancelled) / 1000,
            "accepted_watts": accepted,
            "accepted_kw": accepted / 1000,
            "clearing_price_wei_per_kwh": info.clearing_price,
            "event_start": info.event_start,
            "event_end": info.event_end,
            "payout_wei": payout,
            "payout_eth": payout / 10**18,
            "bid_txs": note.get("bid_txs", []),
            "claim_tx": claim_tx,
            "withdraw_tx": withdraw_tx,
            "withdrawn_wei": withdrawn,
            "bid_at": note.get("bid_at"),
            "settled_at": settled_at,
            "recorded_at": int(time.time()),
        }
        if self.results.append(record):
            self._say("recorded request %d in %s", rid, self.results.path)

    def _record_cancelled(self, rid: int) -> None:
        if self.results.find(self.chain_id, self.dr.address, rid, self.address):
            return
        self.results.append({
            "chain_id": self.chain_id, "contract": self.dr.address, "request_id": rid,
            "account": self.address, "label": self.label, "status": "cancelled",
            "accepted_watts": 0, "accepted_kw": 0.0, "payout_wei": 0, "payout_eth": 0.0,
            "bid_txs": self.notes.get(str(rid), {}).get("bid_txs", []), "recorded_at": int(time.time()),
        })
        self._say("request %d was cancelled by the utility; recorded", rid)


@dataclass
class AgentSpec:
    """What one agent needs: its signer, bids source and label."""

    signer: Signer
    bids: BidsProvider
    label: str


class ConsumerService:
    """One listener feeding one or more agents (``dr consumer run`` / ``fleet``)."""

    def __init__(
        self,
        dr: DemandReduction,
        chain_id: int,
        specs: Sequence[AgentSpec],
        *,
        state_path: Path,
        results: ResultsFile,
        start_block: int,
        poll_interval: float = 0.2,
        confirmations: int = 0,
        reorg_depth: int = 12,
        auto_withdraw: bool = True,
        rpc_name: str = "RPC endpoint",
    ) -> None:
        self.dr = dr
        self.state = StateFile(state_path)
        self.poll_interval = poll_interval
        self.rpc_name = rpc_name
        notes = self.state.data.setdefault("agents", {})
        self.agents = [
            ConsumerAgent(dr, s.signer, s.bids, results, notes.setdefault(s.signer.address, {}),
                          chain_id=chain_id, auto_withdraw=auto_withdraw, label=s.label)
            for s in specs
        ]
        self.poller = LogPoller(
            dr.w3, dr.address, EVENTS, self.state, start_block=start_block,
            confirmations=confirmations, reorg_depth=reorg_depth,
            label=self.agents[0].label if len(specs) == 1 else "fleet",
        )
        self._pool = ThreadPoolExecutor(max_workers=min(32, len(self.agents))) if len(self.agents) > 1 else None

    def _dispatch(self, event: Event) -> None:
        if self._pool is None:
            self.agents[0].on_event(event)
            return
        errors = []
        for future in [self._pool.submit(agent.on_event, event) for agent in self.agents]:
            try:
                future.result()
            except Exception as exc:
                errors.append(exc)
        retry = [e for e in errors if is_connection_error(e)]
        if retry:
            raise retry[0]
        for exc in errors:
            log.error("fleet: %s: %s", type(exc).__name__, exc)

    def _removed(self, key: str, info: list) -> None:
        for agent in self.agents:
            agent.on_removed(key, info)

    def run(self, stop: threading.Event) -> None:
        """Listen and act until ``stop`` is set."""
        who = self.agents[0].label if len(self.agents) == 1 else f"{len(self.agents)} agents"
        log.info("%s: listening for requests on %s from block %d (poll every %.2f s)",
                 who, self.dr.address, self.poller.next_block, self.poll_interval)
        try:
            self.poller.run(self._dispatch, stop, self.poll_interval, on_removed=self._removed,
                            rpc_name=self.rpc_name)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self.state.save()
            log.info("%s: stopped", who)


def state_path_for(state_dir: Path, chain_id: int, contract: str, account: str, kind: str = "consumer") -> Path:
    """The cursor/notes file of a consumer (or fleet) on one contract."""
    return Path(state_dir) / f".cursor-{kind}-{chain_id}-{contract[2:10].lower()}-{account[2:10].lower()}.json"
