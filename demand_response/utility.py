"""The utility: deploying, requesting reductions, settling them and reporting status."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .chain import Signer
from .errors import ChainError, PlanError, TransactionFailed
from .config import Settings, cursor_file, record_deployment
from .contract import DemandReduction, RequestInfo, Stage, Status, Terms, TermsInfo
from .listener import Event, LogPoller, StateFile, is_connection_error
from .locks import AccountLocks
from .payments import settle_participant, withdraw_owed
from .units import ETH, eth
from .sealed import MeterReadings
from .market import phase
from .market import PricingRule, WS_PER_KWH, required_budget, round_cap, tick_wei

log = logging.getLogger("demand_response.utility")

EVENTS = ("ReductionRequested", "WinnersSelected", "RequestCancelled")
#: The lowest price cap a request may have: 0.000001 ETH per kWh, the smallest price the
#: tools print (6 decimals of ETH). Below it every figure of the request would read 0.000000
#: ETH and no household could be paid a visible amount for a kWh (issue 14, bug 13).
MIN_CAP_WEI_PER_KWH = 10**12


def deploy(settings: Settings, signer: Signer, chain_id: int, registration_required: bool = False) -> DemandReduction:
    """Deploy a DemandReduction from ``signer`` and record it for (network, chain id) and in .env."""
    from .artifacts import load_artifact
    from .contract import decode_revert

    artifact = load_artifact()
    factory = signer.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(registration_required).build_transaction({"from": signer.address})
    receipt = signer.send(tx, decode_error=decode_revert)
    dr = DemandReduction.at(signer.w3, receipt["contractAddress"])
    record_deployment(settings, chain_id, dr.address, int(receipt["blockNumber"]),
                      "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x"),
                      utility=signer.address, registration_required=registration_required)
    return dr


@dataclass(frozen=True)
class RequestPlan:
    """A reduction request before it is sent."""

    target_watts: int
    event_start: int
    event_end: int
    bidding_deadline: int
    max_price: int
    budget: int
    rule: PricingRule
    terms: Terms = Terms()

    @property
    def duration(self) -> int:
        """Event length in seconds."""
        return self.event_end - self.event_start


def plan_request(
    *,
    target_kw: float,
    now: int,
    bidding_window_s: int = 60,
    event_delay_s: int = 0,
    event_duration_s: int = 3600,
    max_price_wei_per_kwh: int | None = None,
    budget_wei: int | None = None,
    rule: PricingRule = PricingRule.UNIFORM,
    reveal_window_s: int = 0,
    report_window_s: int = 0,
    dispute_window_s: int = 0,
    bond_wei: int = 0,
) -> RequestPlan:
    """Turn user-level choices into contract arguments; either a cap or a budget is needed.

    With a budget only, the cap is the highest grid price the budget covers for the full
    target. With a cap only, the budget is the minimum the contract accepts. A cap (given, or
    afforded by the budget) below ``MIN_CAP_WEI_PER_KWH`` is refused with a ``PlanError``
    naming the least budget that would do.
    """
    target_watts = round(target_kw * 1000)
    if target_watts <= 0:
        raise PlanError("the target must be above 0 kW")
    if bidding_window_s <= 0 or event_duration_s <= 0 or event_delay_s < 0:
        raise PlanError("the bidding window and event duration must be positive")
    if min(reveal_window_s, report_window_s, dispute_window_s, bond_wei) < 0:
        raise PlanError("windows and the bond must not be negative")
    if bond_wei and not (reveal_window_s or report_window_s):
        raise PlanError("a bond needs sealed bids (a reveal window) or metered settlement (a report window)")
    if dispute_window_s and not report_window_s:
        raise PlanError("a dispute window needs metered settlement (a report window)")
    terms = Terms(reveal_window_s, report_window_s, dispute_window_s, bond_wei)
    deadline = now + bidding_window_s
    start = deadline + max(event_delay_s, reveal_window_s)  # the event starts after the reveals
    end = start + event_duration_s
    if max_price_wei_per_kwh is None and budget_wei is None:
        raise PlanError("give a maximum price (wei per kWh) or a budget")
    if max_price_wei_per_kwh is None:
        cap = round_cap(budget_wei * WS_PER_KWH // (target_watts * event_duration_s))
        if cap < MIN_CAP_WEI_PER_KWH:
            kwh = target_watts * event_duration_s / WS_PER_KWH
            need = required_budget(target_watts, event_duration_s, MIN_CAP_WEI_PER_KWH)
            raise PlanError(
                f"a budget of {budget_wei} wei cannot pay even {eth(MIN_CAP_WEI_PER_KWH)} ETH per kWh for the "
                f"{kwh:g} kWh asked; give a budget of at least {need / ETH:.6f} ETH, or a smaller target "
                "or a shorter event")
    else:
        cap = round_cap(max_price_wei_per_kwh)
        if cap < MIN_CAP_WEI_PER_KWH:
            raise PlanError(f"a price cap of {max_price_wei_per_kwh} wei per kWh is below the least the tools "
                            f"accept, {eth(MIN_CAP_WEI_PER_KWH)} ETH per kWh; raise the cap")
    minimum = required_budget(target_watts, event_duration_s, cap)
    budget = minimum if budget_wei is None else budget_wei
    if budget < minimum:
        raise PlanError(f"a budget of {eth(budget)} ETH is below the {eth(minimum)} ETH this cap needs")
    return RequestPlan(target_watts, start, end, deadline, cap, budget, rule, terms)


def preview(plan: RequestPlan) -> str:
    """A few lines describing what the request may cost and pay."""
    hours = plan.duration / 3600
    full = required_budget(plan.target_watts, plan.duration, plan.max_price)
    per_kw_at_cap = required_budget(1000, plan.duration, plan.max_price)
    lines = [
        f"Request: {plan.target_watts / 1000:.3f} kW for {hours:.2f} h "
        f"({time.strftime('%H:%M:%S', time.localtime(plan.event_start))}–"
        f"{time.strftime('%H:%M:%S', time.localtime(plan.event_end))}), bidding closes "
        f"{time.strftime('%H:%M:%S', time.localtime(plan.bidding_deadline))}, {plan.rule.name.lower()} pricing",
        f"Price cap {eth(plan.max_price)} ETH/kWh (grid step {eth(tick_wei(plan.max_price))} ETH/kWh)",
        f"Budget escrowed {eth(plan.budget)} ETH; paying the cap for the full target costs {eth(full)} ETH "
        f"({eth(per_kw_at_cap)} ETH per kW); the rest is refunded at settlement",
    ]
    t = plan.terms
    if t.sealed:
        lines.append(f"Sealed bids: commitments until bidding closes, reveals until "
                     f"{time.strftime('%H:%M:%S', time.localtime(plan.bidding_deadline + t.reveal_window))}; "
                     "winners are selected after that")
    if t.metered:
        lines.append(f"Paid on measured delivery: meter reports until {t.report_window} s after the event, "
                     f"confirm or dispute within {t.dispute_window} s more; undelivered pay comes back")
    if t.metered and t.bond_wei and plan.event_start <= plan.bidding_deadline + t.reveal_window:
        lines.append("Note: the event starts when bidding (or the reveals) close, so the winners are selected "
                     "after it starts and no shortfall penalty can apply; give notice with --event-delay")
    if t.bond_wei:
        lines.append(f"Bond per consumer {eth(t.bond_wei)} ETH"
                     + (": forfeited if a commitment is not revealed" if t.sealed else "")
                     + ("; shortfall penalty out of it" if t.metered else ""))
    for fraction in (0.25, 0.5, 1.0):
        price = round_cap(int(plan.max_price * fraction)) or plan.max_price
        lines.append(
            f"  if it clears at {eth(price)} ETH/kWh: pays {eth(required_budget(plan.target_watts, plan.duration, price))} ETH,"
            f" refund {eth(plan.budget - required_budget(plan.target_watts, plan.duration, price))} ETH"
        )
    return "\n".join(lines)


def send_request(dr: DemandReduction, signer: Signer, plan: RequestPlan) -> tuple[int, dict[str, Any]]:
    """Post ``plan``; returns (request id, receipt)."""
    if plan.terms != Terms():
        return dr.request_reduction_with_terms(
            signer, plan.target_watts, plan.event_start, plan.event_end, plan.bidding_deadline,
            plan.max_price, plan.terms, plan.rule, budget=plan.budget,
        )
    return dr.request_reduction(
        signer, plan.target_watts, plan.event_start, plan.event_end, plan.bidding_deadline,
        plan.max_price, plan.rule, budget=plan.budget,
    )


def outcome_line(info: RequestInfo) -> str:
    """One line summarising a settled request."""
    refund = info.budget - info.reserved
    return (
        f"request {info.request_id} settled: clearing price {eth(info.clearing_price)} ETH/kWh, "
        f"accepted {info.accepted_watts / 1000:.3f} kW of {info.target_watts / 1000:.3f} kW target, "
        f"payouts {eth(info.reserved)} ETH, refund {eth(refund)} ETH"
    )


def status_rows(dr: DemandReduction, now: int | None = None) -> list[dict[str, Any]]:
    """Every request with its state, for ``dr utility status``."""
    rows = []
    for rid in range(1, dr.request_count() + 1):
        info = dr.get_request(rid)
        state = info.status.name.lower()
        if info.status == Status.OPEN and now is not None and now > info.bidding_deadline:
            state = "awaiting settlement"
        t = dr.terms_of(rid)
        ph = phase(int(info.status), now if now is not None else int(time.time()), info.bidding_deadline,
                   info.event_start, info.event_end, t.reveal_deadline, t.report_deadline, t.dispute_deadline,
                   delivery_done=info.claimed_watts == info.accepted_watts)
        kind = "+".join(k for k, on in (("sealed", t.sealed), ("metered", t.metered)) if on) or "open"
        rows.append({
            "id": rid, "state": state, "phase": ph, "terms": kind, "rule": info.rule.name.lower(),
            "target_kw": info.target_watts / 1000, "bids": info.bid_count,
            "cap_eth_per_kwh": info.max_price / ETH, "deadline": info.bidding_deadline,
            "clearing_eth_per_kwh": info.clearing_price / ETH, "accepted_kw": info.accepted_watts / 1000,
            "paid_eth": info.paid_out / ETH, "budget_eth": info.budget / ETH,
        })
    return rows


def format_status(rows: Iterable[dict[str, Any]]) -> str:
    """A plain-text table of ``status_rows``."""
    header = f"{'id':>4} {'state':<20} {'phase':<10} {'terms':<14} {'rule':<10} {'target kW':>9} {'bids':>5} {'cap ETH/kWh':>12} " \
             f"{'deadline':>8} {'clear ETH/kWh':>13} {'acc. kW':>8} {'paid ETH':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['id']:>4} {r['state']:<20} {r.get('phase', ''):<10} {r.get('terms', 'open'):<14} {r['rule']:<10} {r['target_kw']:>9.3f} {r['bids']:>5} "
            f"{r['cap_eth_per_kwh']:>12.6f} {time.strftime('%H:%M:%S', time.localtime(r['deadline'])):>8} "
            f"{r['clearing_eth_per_kwh']:>13.6f} {r['accepted_kw']:>8.3f} {r['paid_eth']:>10.6f}"
        )
    if len(lines) == 2:
        lines.append("(no requests yet)")
    return "\n".join(lines)


class UtilityDaemon:
    """Watches the utility's open requests, settles each after its deadline, withdraws refunds."""

    def __init__(
        self,
        dr: DemandReduction,
        signer: Signer,
        *,
        state_path: Path,
        start_block: int,
        poll_interval: float = 0.5,
        confirmations: int = 0,
        reorg_depth: int = 12,
        auto_withdraw: bool = True,
        only: set[int] | None = None,
        exit_when_idle: bool = False,
        on_settled: Callable[[RequestInfo], None] | None = None,
        rpc_name: str = "RPC endpoint",
        meter_file: Path | None = None,
        lock_dir: Path | None = None,
        chain_id: int | None = None,
    ) -> None:
        self.dr = dr
        self.signer = signer
        #: The utility account's lock (``locks``): one daemon per account.
        self.locks = AccountLocks(lock_dir if lock_dir is not None else Path(state_path).parent,
                                  chain_id if chain_id is not None else int(dr.w3.eth.chain_id),
                                  [signer.address], "utility run")
        self.state = StateFile(state_path)
        self.open: set[int] = {int(r) for r in self.state.data.get("open", [])}
        #: Settled metered requests whose participants are not all settled yet.
        self.metered: set[int] = {int(r) for r in self.state.data.get("metered", [])}
        #: The utility's own meter data (as meter operator); without it, reports are final
        #: at the dispute deadline.
        self.meter = MeterReadings(meter_file) if meter_file is not None else None
        self._judged: set[tuple[int, str]] = set()
        self.poll_interval = poll_interval
        self.auto_withdraw = auto_withdraw
        self.only = only
        self.exit_when_idle = exit_when_idle
        self.on_settled = on_settled
        self.rpc_name = rpc_name
        self.poller = LogPoller(dr.w3, dr.address, EVENTS, self.state, start_block=start_block,
                                confirmations=confirmations, reorg_depth=reorg_depth, label="utility")
        self._stop: threading.Event | None = None
        self._seen_any = bool(self.open)
        self._deadlines: dict[int, int] = {}
        self._terms: dict[tuple[int, bool], TermsInfo] = {}
        self._is_dev: bool | None = None
        self.settled: list[RequestInfo] = []

    def _dev_chain(self) -> bool:
        if self._is_dev is None:
            from .config import DEV_CHAIN_IDS

            self._is_dev = int(self.dr.w3.eth.chain_id) in DEV_CHAIN_IDS
        return self._is_dev

    def _save_open(self) -> None:
        self.state.data["open"] = sorted(self.open)
        self.state.data["metered"] = sorted(self.metered)
        self.state.save()

    def _on_event(self, event: Event) -> None:
        rid = int(event.args["requestId"])
        if self.only is not None and rid not in self.only:
            return
        if event.name == "ReductionRequested":
            info = self.dr.get_request(rid)
            if info.status == Status.OPEN:
                self.open.add(rid)
                self._seen_any = True
                log.info("utility: watching request %d (%.3f kW, bidding closes %s)", rid,
                         info.target_watts / 1000, time.strftime("%H:%M:%S", time.localtime(info.bidding_deadline)))
        elif event.name in ("WinnersSelected", "RequestCancelled") and rid in self.open:
            self.open.discard(rid)  # settled by someone else (or cancelled)
            if event.name == "WinnersSelected":
                self._report(self.dr.get_request(rid))
        self._save_open()

    def _tick(self) -> None:
        if self.metered:
            self._tick_metered()
        if not self.open:
            if self.exit_when_idle and self._stop is not None and self._seen_any and not self.metered:
                self._stop.set()
            return
        latest = self.dr.w3.eth.get_block("latest")
        chain_now = int(latest["timestamp"])
        now = max(chain_now, int(time.time()))
        due = [rid for rid in self.open if rid in self._deadlines and self._deadlines[rid] < now]
        if due and chain_now <= max(self._deadlines[r] for r in due) and self._dev_chain():
            # An idle instamine dev chain makes no blocks, and gas estimation runs at the
            # latest block's time: mine one so the chain's clock passes the deadline.
            self.dr.w3.provider.make_request("evm_mine", [])
        for rid in sorted(self.open):
            info = self.dr.get_request(rid)
            if info.status != Status.OPEN:
                self.open.discard(rid)
                if info.status == Status.SETTLED:
                    self._report(info)
                continue
            terms = self._terms_of(rid)
            closes = terms.reveal_deadline if terms.sealed else info.bidding_deadline
            self._deadlines[rid] = closes
            if now <= closes:
                continue
            try:
                self.poller.watch(self.dr.select_winners(self.signer, rid))
            except TransactionFailed as exc:
                if exc.error == "BiddingStillOpen":
                    continue  # the chain's clock is behind ours; try again next tick
                log.error("utility: settling request %d failed: %s", rid, exc)
                self.open.discard(rid)
                continue
            self.open.discard(rid)
            self._report(self.dr.get_request(rid))
        self._save_open()
        if self.auto_withdraw and not self.open:
            self._withdraw()

    def _terms_of(self, rid: int, settled: bool = False) -> TermsInfo:
        """Terms, cached per phase: a late selection moves a metered request's deadlines."""
        if (rid, settled) not in self._terms:
            self._terms[(rid, settled)] = self.dr.terms_of(rid)
        return self._terms[(rid, settled)]

    def _tick_metered(self) -> None:
        """Confirm or dispute meter reports with the utility's meter data, then settle every
        participant once the windows are over, so the unearned budget comes back."""
        for rid in sorted(self.metered):
            info = self.dr.get_request(rid)
            terms = self._terms_of(rid, settled=True)
            if info.claimed_watts == info.accepted_watts:
                self.metered.discard(rid)
                log.info("utility: request %d: every accepted watt is settled on delivery", rid)
                self._save_open()
                if self.auto_withdraw:
                    self._withdraw()
                continue
            latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
            if latest + 1 < time.time() and self._dev_chain():
                self.dr.w3.provider.make_request("evm_mine", [])  # an idle dev chain's clock stands still
                latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
            if latest < info.event_end:
                continue
            bidders = sorted({b.bidder for b in self.dr.all_bids(rid)})
            if latest <= terms.dispute_deadline:
                if self.meter is None:
                    continue
                for who in bidders:
                    if (rid, who) in self._judged:
                        continue
                    p = self.dr.participant_of(rid, who)
                    if p.stage != Stage.REPORTED:
                        continue
                    measured = self.meter.delivered(who, rid, info.duration, chain_id=int(self.dr.w3.eth.chain_id),
                                                    contract=self.dr.address)
                    if measured is None:
                        continue
                    self._judged.add((rid, who))
                    if measured >= p.delivered_watts:
                        self.poller.watch(self.dr.confirm_delivery(self.signer, rid, who))
                        log.info("utility: request %d: confirmed %s's report of %.3f kW", rid, who[:10],
                                 p.delivered_watts / 1000)
                    else:
                        self.poller.watch(self.dr.dispute_delivery(self.signer, rid, who, measured))
                        log.warning("utility: request %d: disputed %s's report of %.3f kW; the meter says %.3f kW",
                                    rid, who[:10], p.delivered_watts / 1000, measured / 1000)
                continue
            for who in bidders:
                p = self.dr.participant_of(rid, who)
                if p.stage in (Stage.BID, Stage.REPORTED) and p.accepted_watts:
                    receipt = settle_participant(self.dr, self.signer, rid, who)
                    if receipt is None:  # the consumer settled itself first: a race lost, not an error
                        log.info("utility: request %d: %s was settled meanwhile by someone else", rid, who[:10])
                        continue
                    self.poller.watch(receipt)
                    log.info("utility: request %d: settled %s (%s)", rid, who[:10],
                             "reported" if p.stage == Stage.REPORTED else "no report: nothing delivered")

    def _report(self, info: RequestInfo) -> None:
        self.settled.append(info)
        log.info("utility: %s", outcome_line(info))
        if self._terms_of(info.request_id).metered and info.accepted_watts:
            self.metered.add(info.request_id)
            self._save_open()
        if self.on_settled is not None:
            self.on_settled(info)

    def _reorged(self) -> None:
        """A reorganisation (or a node back without its last blocks) may have undone a
        settlement: watch again every recent request that is open."""
        self.signer.resync()
        count = self.dr.request_count()
        for rid in range(max(1, count - 63), count + 1):
            if (self.only is None or rid in self.only) and rid not in self.open \
                    and self.dr.get_request(rid).status == Status.OPEN:
                self.open.add(rid)
                log.warning("utility: request %d is open again after the reorganisation; watching it", rid)
        self._save_open()

    def _withdraw(self) -> None:
        done = withdraw_owed(self.dr, self.signer)
        if done is not None:
            log.info("utility: withdrew refund %s ETH (tx %s…)", eth(done.wei), done.tx[2:14])

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (or, with ``exit_when_idle``, until nothing is open)."""
        self.locks.acquire()
        try:
            self._run(stop)
        finally:
            self.locks.release()

    def _run(self, stop: threading.Event) -> None:
        self._stop = stop
        self.signer.cancel = stop  # a receipt wait ends at once when the daemon is stopped
        for rid in sorted(self.only or ()):
            self._seen_any = True
            if rid <= self.dr.request_count() and self.dr.get_request(rid).status == Status.OPEN:
                self.open.add(rid)
        log.info("utility: watching %s from block %d", self.dr.address, self.poller.next_block)

        def idle() -> None:
            try:
                self._tick()
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                log.error("utility: %s: %s", type(exc).__name__, exc)

        try:
            self.poller.run(self._on_event, stop, self.poll_interval, on_idle=idle, on_reorg=self._reorged,
                            rpc_name=self.rpc_name)
        finally:
            self._save_open()
            log.info("utility: stopped")


def utility_state_path(state_dir: Path, chain_id: int, contract: str, account: str) -> Path:
    """The cursor file of the utility daemon (``config.cursor_file``)."""
    return cursor_file(state_dir, "utility", chain_id, contract, account)


__all__ = [
    "ChainError", "RequestPlan", "UtilityDaemon", "deploy", "format_status", "outcome_line", "plan_request",
    "preview", "send_request", "status_rows", "utility_state_path",
]
