"""The reference clearing: the DemandReduction market in plain Python.

This is the oracle the contract is tested against; both must agree to the wei on every
input. The utility also uses it to preview an outcome before it requests.

Rules (docs/contract.md has the full specification):

* Prices live on a grid of ``TICKS`` levels: ``tick_wei = cap // TICKS``.
* Live (not withdrawn) bids are ranked by unit price; equal prices keep submission order
  (first come, first served).
* Bids are accepted cheapest first until the target is met; the marginal bid is accepted
  in part, so accepted watts equal the target whenever supply reaches it.
* Uniform: every accepted watt earns the clearing price (the highest accepted price).
  Pay-as-bid: every accepted watt earns its own price.
* A bid's payout is ``accepted W * duration s * price // 3_600_000`` (rounded down).
* The utility is refunded ``budget - reserved`` at settlement, where ``reserved`` is the
  same formula applied once to the total (uniform) or to each price level's total
  (pay-as-bid); the per-bid rounding dust goes back to it once every winner has claimed.
* ``claimAndPay`` (``paid_by_claim_and_pay``) pays the winning bids it is given that are not
  claimed yet, each once and in order; claimed and losing bids are skipped (a losing bid
  stays unclaimed). A payout the recipient refuses is credited to its pull balance instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Sequence

TICKS = 128
WS_PER_KWH = 3_600_000
MAX_BIDS_PER_CALL = 64
#: Largest bid the contract takes, in W (2^24 - 1, 16.7 MW): with queue positions of 48 bits,
#: closing a price level by bidding and withdrawing takes over 2^24 bids (docs/security.md, F-8).
MAX_BID_WATTS = 2**24 - 1
GRACE_PERIOD = 3600


class PricingRule(IntEnum):
    """How accepted watts are paid; values match the contract's enum."""

    UNIFORM = 0
    PAY_AS_BID = 1


@dataclass(frozen=True)
class Bid:
    """One offer: ``watts`` of reduction at ``price`` wei per kWh, from ``bidder``."""

    bidder: str
    watts: int
    price: int
    cancelled: bool = False


@dataclass(frozen=True)
class BidOutcome:
    """What one bid got."""

    accepted_watts: int
    payout: int


@dataclass(frozen=True)
class Clearing:
    """The outcome of one request."""

    clearing_price: int  # wei/kWh; 0 when nothing was accepted
    accepted_watts: int
    reserved: int  # wei kept back from the budget for payouts
    refund: int  # wei returned to the utility at settlement
    outcomes: tuple[BidOutcome, ...] = field(default_factory=tuple)  # one per bid, same order

    @property
    def total_payout(self) -> int:
        """Sum of the per-bid payouts (reserved minus rounding dust)."""
        return sum(o.payout for o in self.outcomes)

    @property
    def dust(self) -> int:
        """Rounding dust that goes back to the utility once all winners have claimed."""
        return self.reserved - self.total_payout


def required_budget(target_watts: int, duration_s: int, cap_wei_per_kwh: int) -> int:
    """The smallest budget the contract accepts for a request."""
    return target_watts * duration_s * cap_wei_per_kwh // WS_PER_KWH


def payout(watts: int, duration_s: int, price_wei_per_kwh: int) -> int:
    """Wei earned by ``watts`` of reduction held for ``duration_s`` at ``price``."""
    return watts * duration_s * price_wei_per_kwh // WS_PER_KWH


def tick_wei(cap_wei_per_kwh: int) -> int:
    """Price of one tick for a request with this cap."""
    return cap_wei_per_kwh // TICKS


def round_cap(cap_wei_per_kwh: int) -> int:
    """The largest valid cap (a multiple of ``TICKS``) not above ``cap_wei_per_kwh``."""
    return cap_wei_per_kwh - cap_wei_per_kwh % TICKS


def snap_price_up(price_wei_per_kwh: int, cap_wei_per_kwh: int) -> int:
    """The cheapest grid price not below ``price``: a bidder never sells below its ask."""
    step = tick_wei(cap_wei_per_kwh)
    return -(-price_wei_per_kwh // step) * step


def clear(
    bids: Sequence[Bid],
    target_watts: int,
    duration_s: int,
    cap_wei_per_kwh: int,
    budget: int,
    rule: PricingRule = PricingRule.UNIFORM,
) -> Clearing:
    """Clear one request. ``bids`` are in submission order (their contract bid ids)."""
    if target_watts <= 0 or duration_s <= 0 or cap_wei_per_kwh <= 0 or cap_wei_per_kwh % TICKS:
        raise ValueError("target, duration and cap must be positive; cap a multiple of TICKS")
    if budget < required_budget(target_watts, duration_s, cap_wei_per_kwh):
        raise ValueError("budget below target * duration * cap / 3.6e6")
    step = tick_wei(cap_wei_per_kwh)
    for bid in bids:
        if bid.watts <= 0 or bid.price <= 0 or bid.price > cap_wei_per_kwh or bid.price % step:
            raise ValueError(f"bid off the market's grid: {bid}")

    order = sorted(
        (i for i, bid in enumerate(bids) if not bid.cancelled), key=lambda i: (bids[i].price, i)
    )
    accepted = [0] * len(bids)
    remaining = target_watts
    clearing_price = 0
    value = 0  # sum of accepted W * own price
    for i in order:
        if remaining == 0:
            break
        take = min(bids[i].watts, remaining)
        accepted[i] = take
        remaining -= take
        clearing_price = bids[i].price
        value += take * bids[i].price
    total = target_watts - remaining

    if rule == PricingRule.UNIFORM:
        reserved = total * duration_s * clearing_price // WS_PER_KWH
        outcomes = tuple(
            BidOutcome(a, payout(a, duration_s, clearing_price)) for a in accepted
        )
    else:
        reserved = value * duration_s // WS_PER_KWH
        outcomes = tuple(
            BidOutcome(a, payout(a, duration_s, bid.price)) for a, bid in zip(accepted, bids)
        )
    return Clearing(clearing_price, total, reserved, budget - reserved, outcomes)


def by_bidder(bids: Iterable[Bid], clearing: Clearing) -> dict[str, BidOutcome]:
    """Sum the outcomes of each bidder's bids."""
    totals: dict[str, list[int]] = {}
    for bid, outcome in zip(bids, clearing.outcomes):
        entry = totals.setdefault(bid.bidder, [0, 0])
        entry[0] += outcome.accepted_watts
        entry[1] += outcome.payout
    return {who: BidOutcome(w, p) for who, (w, p) in totals.items()}


def paid_by_claim_and_pay(clearing: Clearing, claimed: Iterable[int], indexes: Iterable[int]) -> list[int]:
    """Indexes (into the bids) that one ``claimAndPay`` call over ``indexes`` pays, in order:
    winning bids not in ``claimed``, each once; claimed and losing bids are skipped."""
    done = set(claimed)
    paid = []
    for i in indexes:
        if i not in done and clearing.outcomes[i].accepted_watts:
            done.add(i)
            paid.append(i)
    return paid


# -- sealed bids -----------------------------------------------------------------------------


def commitment(chain_id: int, contract: str, request_id: int, bidder: str,
               watts: Sequence[int], prices: Sequence[int], salt: bytes) -> bytes:
    """The contract's ``commitmentOf``: keccak256(abi.encode(chainid, contract, request,
    bidder, watts, prices, salt)). Binding chain, contract, request and bidder stops a
    commitment being replayed elsewhere or revealed by anyone else."""
    from eth_abi import encode
    from eth_utils import keccak, to_checksum_address

    if len(salt) != 32:
        raise ValueError("salt must be 32 bytes")
    return keccak(encode(
        ["uint256", "address", "uint256", "address", "uint256[]", "uint256[]", "bytes32"],
        [chain_id, to_checksum_address(contract), request_id, to_checksum_address(bidder),
         list(watts), list(prices), salt],
    ))


# -- settlement on measured delivery -----------------------------------------------------------


@dataclass(frozen=True)
class DeliverySettlement:
    """How one participant of a metered request is settled (all in wei)."""

    accepted_watts: int
    delivered_watts: int
    payout: int  # to the consumer: promised * min(1, delivered / accepted)
    penalty: int  # out of the bond: bond * shortfall / accepted
    bond_returned: int  # to the consumer
    to_utility: int  # unearned payout + penalty

    @property
    def to_consumer(self) -> int:
        return self.payout + self.bond_returned


def had_notice(selected_at: int, event_start: int, notice_period: int) -> bool:
    """Whether winners selected at ``selected_at`` had the request's notice period before the
    event start: only then may a shortfall be penalised (a zero notice period: never)."""
    return notice_period > 0 and selected_at + notice_period <= event_start


def metered_delivery(reported_watts: int | None, metered_watts: int) -> int:
    """The delivery ``meterDelivery`` settles on: the utility's figure, capped by the
    consumer's report when it sent one (metering at or above a report confirms it)."""
    return metered_watts if reported_watts is None else min(reported_watts, metered_watts)


def settle_delivery(accepted_watts: int, promised: int, delivered_watts: int, bond: int = 0,
                    selected_late: bool = False) -> DeliverySettlement:
    """The contract's delivery settlement for one consumer, to the wei.

    ``promised`` is the payout of its accepted watts (the sum of its bids' outcomes);
    a consumer that did not report has ``delivered_watts = 0``. ``selected_late``: winners
    did not get the request's notice period (``not had_notice(...)``), so they could not plan
    their reduction and no shortfall penalty applies.
    """
    if min(accepted_watts, promised, delivered_watts, bond) < 0:
        raise ValueError("amounts must not be negative")
    credited = min(delivered_watts, accepted_watts)
    pay = promised * credited // accepted_watts if accepted_watts else 0
    penalty = bond * (accepted_watts - credited) // accepted_watts if accepted_watts and not selected_late else 0
    return DeliverySettlement(accepted_watts, delivered_watts, pay, penalty, bond - penalty,
                              promised - pay + penalty)


def delivered_watts(baseline_wh: float, metered_wh: float, duration_s: int) -> int:
    """Delivered reduction as average W over the window: (baseline - metered) energy / time.

    Never negative: consuming more than the baseline delivers nothing.
    """
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    return max(0, int((baseline_wh - metered_wh) * 3600 // duration_s))
