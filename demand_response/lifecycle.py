"""Where a request is in its life: one state and phase vocabulary for the CLI, the web and the API.

A request has a coarse **state** and a finer **phase**, both computed here from what the
contract reports (the request, its terms) and the chain's clock, and nowhere else:

=========  ==========  ===============================================================
state      phase       meaning
=========  ==========  ===============================================================
open       bidding     bidding is open (commitments, in sealed mode)
open       revealing   sealed bids are being revealed
closed     selecting   bidding closed, winners not selected yet
selected   scheduled   winners selected, the event has not started
selected   event       the event is running
selected   reporting   metered: consumers report their metered delivery
selected   disputing   metered: the utility may confirm or dispute reports
selected   settling    the event is over and some winners are not paid yet
settled    settled     every accepted watt is paid (or nothing was accepted)
cancelled  cancelled   the utility cancelled the request; bidders withdraw
=========  ==========  ===============================================================

"settled" means paid, never just "winners selected": the contract's status 2 (named
``Settled`` on chain) is the state ``selected`` here until every accepted watt is paid
(``claimedWatts == acceptedWatts``). The module imports nothing of the package, so every
layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: The contract's request status values (``contract.Status``).
_OPEN, _SELECTED, _CANCELLED = 1, 2, 3

#: Every phase, in life-cycle order, with what it means for people.
PHASES: dict[str, str] = {
    "bidding": "bidding is open",
    "revealing": "sealed bids are being revealed",
    "selecting": "bidding closed, winners not selected yet",
    "scheduled": "winners selected, the event has not started",
    "event": "the event is running",
    "reporting": "consumers report their metered delivery",
    "disputing": "the utility may confirm or dispute reports",
    "settling": "the event is over and some winners are not paid yet",
    "settled": "every winner is paid",
    "cancelled": "cancelled",
}

#: The coarse state of each phase.
STATE_OF_PHASE: dict[str, str] = {
    "bidding": "open",
    "revealing": "open",
    "selecting": "closed",
    "scheduled": "selected",
    "event": "selected",
    "reporting": "selected",
    "disputing": "selected",
    "settling": "selected",
    "settled": "settled",
    "cancelled": "cancelled",
}

#: Every state, in life-cycle order, with what it means for people.
STATES: dict[str, str] = {
    "open": "bids are accepted (or revealed)",
    "closed": "bidding closed, winners not selected yet",
    "selected": "winners selected, not every winner is paid yet",
    "settled": "every winner is paid",
    "cancelled": "cancelled",
}


class RequestFacts(Protocol):
    """What the life cycle reads of a request (``contract.RequestInfo`` has it)."""

    status: int
    bidding_deadline: int
    event_start: int
    event_end: int
    accepted_watts: int
    claimed_watts: int


class TermsFacts(Protocol):
    """What the life cycle reads of a request's terms (``contract.TermsInfo`` has it)."""

    reveal_deadline: int
    report_deadline: int
    dispute_deadline: int


@dataclass(frozen=True)
class Lifecycle:
    """A request's state and phase at one chain time."""

    state: str
    phase: str

    @property
    def meaning(self) -> str:
        """The phase in words."""
        return PHASES[self.phase]

    @property
    def selected(self) -> bool:
        """Winners are selected: clearing price, accepted kW and payouts are final."""
        return self.state in ("selected", "settled")


def phase(info: RequestFacts, terms: TermsFacts, now: int) -> str:
    """The phase of a request at chain time ``now`` (see the table in the module docstring)."""
    status = int(info.status)
    if status == _CANCELLED:
        return "cancelled"
    if status == _OPEN:
        if now <= info.bidding_deadline:
            return "bidding"
        if terms.reveal_deadline and now <= terms.reveal_deadline:
            return "revealing"
        return "selecting"
    if status != _SELECTED:
        raise ValueError(f"unknown request status {status}")
    if info.claimed_watts >= info.accepted_watts:
        return "settled"
    if now < info.event_start:
        return "scheduled"
    if now < info.event_end:
        return "event"
    if terms.report_deadline:
        if now <= terms.report_deadline:
            return "reporting"
        if now <= terms.dispute_deadline:
            return "disputing"
    return "settling"


def lifecycle(info: RequestFacts, terms: TermsFacts, now: int) -> Lifecycle:
    """The state and phase of a request at chain time ``now``."""
    name = phase(info, terms, now)
    return Lifecycle(STATE_OF_PHASE[name], name)


@dataclass(frozen=True)
class DeliveryActions:
    """What the utility can do now about one participant of a metered request."""

    can_confirm: bool
    can_dispute: bool
    can_settle: bool
    settle_from: int | None  # chain time from which settling is allowed, when not yet


def delivery_actions(info: RequestFacts, terms: TermsFacts, stage: str, accepted_watts: int,
                     reported_watts: int, bond: int, now: int) -> DeliveryActions:
    """The contract's rules for ``meterDelivery`` of a report (confirm: at the report; dispute:
    below it) and ``settleDelivery``
    of one participant at stage ``stage`` (``contract.Stage`` name in lower case) at chain
    time ``now``: a report can be confirmed or disputed (below a non-zero report) until the
    dispute deadline; a participant is settled after the report deadline (after the dispute
    deadline once it reported) or at once when nothing of it was accepted; in a cancelled
    request only a held bond is settled (returned)."""
    status = int(info.status)
    if status == _CANCELLED:
        return DeliveryActions(False, False, bond > 0 and stage != "settled", None)
    selected = status == _SELECTED
    in_dispute_window = selected and now <= terms.dispute_deadline
    due = terms.dispute_deadline if stage == "reported" else terms.report_deadline
    can_settle = selected and stage in ("bonded", "bid", "reported") and (accepted_watts == 0 or now > due)
    reported = stage == "reported" and in_dispute_window
    settle_from = None if can_settle or stage == "settled" or not selected else due + 1
    return DeliveryActions(reported, reported and reported_watts > 0, can_settle, settle_from)
