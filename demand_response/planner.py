"""Request planning: what a person asks for → the arguments the contract takes.

One planner for the CLI (``dr utility request``), the web console and the demo. It is pure:
it reads no chain and no clock (the caller passes ``now``, the chain's time). Its answer is
a :class:`RequestPlan` in the contract's units (integer watts, unix seconds, wei), or a
:class:`PlanError` carrying one :class:`Problem` per wrong input, each naming the input and
the fix. :func:`send_request` posts a plan through the wrapper's one request path.

The rules, decided here once:

- **Target**: kW, converted exactly (decimal arithmetic, never binary floating point) to
  watts. The contract counts whole watts, so a target that is not a whole number of watts
  (more than three decimals of kW) is refused, never rounded or truncated.
- **Money**: ETH amounts are converted exactly to wei; an amount finer than 1 wei is
  refused. The one value the planner adjusts is the price cap, which goes *down* to the
  contract's grid (a multiple of :data:`~demand_response.market.TICKS` wei per kWh): the
  utility never pays more than the cap it gave; :attr:`RequestPlan.cap_rounded` says so.
- **Reveal window**: sealed bids are revealed between the bidding deadline and the reveal
  deadline, and the contract needs the reveals closed when the event starts. The planner
  never moves the event start a person asked for: a reveal window longer than the delay
  between bidding close and event start is refused, with the delay it would need.
- **Cap or budget**: at least one. With a budget only, the cap is the highest grid price
  the budget pays for the full target; with a cap only, the budget is the minimum the
  contract accepts (the full target at the cap); with both, the budget must cover that.
  The cap, given or afforded, must be at least :data:`MIN_CAP_WEI_PER_KWH` (0.000001 ETH
  per kWh, the smallest price the tools print): below it every figure reads 0.000000 ETH.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Union

from . import errors
from .contract import Terms
from .market import TICKS, WS_PER_KWH, PricingRule, required_budget, round_cap, tick_wei
from .units import DISPLAY_DECIMALS, ETH, WEI_PER_ETH, Currency, eth, format_amount, format_price, plain

if TYPE_CHECKING:
    from .chain import Signer
    from .contract import DemandReduction

#: A number as a person typed it: exact decimals, strings, or (from flags) floats.
Number = Union[Decimal, str, int, float]

DAY = 86400
#: Longest bidding, reveal, report and dispute window, and longest delay to the event.
MAX_WINDOW_S = 30 * DAY
#: Longest event.
MAX_DURATION_S = 7 * DAY
#: The contract's storage bounds.
MAX_TARGET_WATTS = 2**40 - 1  # 1.1 TW
MAX_BOND_WEI = 2**96 - 1
MAX_BUDGET_WEI = 2**96 - 1  # base units of the currency
MAX_CAP_WEI = (2**64 - 1) * TICKS
#: The lowest price cap a request may have: 0.000001 ETH per kWh, the smallest price the tools
#: print (6 decimals of ETH). Below it every figure of the request would read 0.000000 ETH and
#: no household could be paid a visible amount for a kWh (issue 14, bug 13).
MIN_CAP_WEI_PER_KWH = 10**12

RULES = {"uniform": PricingRule.UNIFORM, "pay-as-bid": PricingRule.PAY_AS_BID,
         "pay_as_bid": PricingRule.PAY_AS_BID}


@dataclass(frozen=True)
class Problem:
    """One wrong input and the sentence that names it and the fix.

    ``field`` is the input it is about: a parameter name of :func:`plan_request`
    (``target_kw``, ``bidding_window_s``, ``event_delay_s``, ``event_start``,
    ``event_duration_s``, ``rule``, ``reveal_window_s``, ``report_window_s``,
    ``dispute_window_s``), or for money given in wei or ETH, ``max_price``, ``budget`` or ``bond``.
    """

    field: str
    message: str


class PlanError(errors.PlanError):
    """The request cannot be posted as given; ``problems`` has one entry per wrong input.

    A :class:`demand_response.errors.PlanError` (so a ``UserError``, a ``DRError`` and a
    ``ValueError``) that also says which input each problem is about."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))

    def for_field(self, field: str) -> list[str]:
        """The messages about one input (for a form that shows them next to the field)."""
        return [p.message for p in self.problems if p.field == field]


@dataclass(frozen=True)
class RequestPlan:
    """A validated reduction request in the contract's units, before it is sent."""

    target_watts: int
    event_start: int
    event_end: int
    bidding_deadline: int
    max_price: int
    budget: int
    rule: PricingRule
    terms: Terms = Terms()
    #: The cap a person gave was lowered onto the contract's price grid.
    cap_rounded: bool = False

    @property
    def duration(self) -> int:
        """Event length in seconds."""
        return self.event_end - self.event_start

    @property
    def minimum_budget(self) -> int:
        """What the full target costs at the cap: the least the contract accepts."""
        return required_budget(self.target_watts, self.duration, self.max_price)

    @property
    def reveal_deadline(self) -> int:
        """When sealed bids must be revealed (0: open bids)."""
        return self.bidding_deadline + self.terms.reveal_window if self.terms.sealed else 0


def min_cap(cur: Currency = ETH) -> int:
    """The lowest price cap in ``cur``'s base units per kWh: its smallest printed price (6
    decimals), on the price grid (a multiple of ``TICKS``). ``MIN_CAP_WEI_PER_KWH`` for ETH."""
    return max(TICKS, 10 ** max(0, cur.decimals - DISPLAY_DECIMALS))


def eth_text(wei: int) -> str:
    """Wei as an exact ETH figure without trailing zeros ("0.000128 ETH")."""
    return f"{plain(wei, ETH)} ETH"


def _decimal(value: Number) -> Decimal | None:
    """``value`` as an exact finite decimal (floats through their shortest text), or None."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        return None
    return number if number.is_finite() else None


class _Checker:
    """Collects problems while the inputs are read."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))

    def seconds(self, field: str, what: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"the {what} must be a whole number of seconds, not {value!r}")
            return None
        if not low <= value <= high:
            self.fail(field, f"the {what} must be between {_span(low)} and {_span(high)}, not {_span(value)}")
            return None
        return value

    def wei(self, field: str, what: str, wei: int | None, eth: Number | None) -> int | None:
        """An amount given in wei or in ETH (not both), exact; None if absent or wrong."""
        if wei is not None and eth is not None:
            self.fail(field, f"give the {what} once: in wei or in ETH, not both")
            return None
        if eth is not None:
            number = _decimal(eth)
            if number is None:
                self.fail(field, f"the {what} must be a number of ETH, not {eth!r}")
                return None
            exact = number * WEI_PER_ETH
            if exact != exact.to_integral_value():
                self.fail(field, f"the {what} of {eth} ETH is finer than 1 wei (18 decimals at most)")
                return None
            wei = int(exact)
        if wei is None:
            return None
        if isinstance(wei, bool) or not isinstance(wei, int):
            self.fail(field, f"the {what} must be a whole number of wei, not {wei!r}")
            return None
        if wei < 0:
            self.fail(field, f"the {what} must not be negative")
            return None
        return wei


def eth_to_wei(value: Number, what: str = "amount") -> int:
    """An ETH amount as exact wei; :class:`PlanError` if it is not a number, is negative or is
    finer than 1 wei."""
    check = _Checker()
    wei = check.wei(what, what, None, value)
    if check.problems or wei is None:
        raise PlanError(check.problems or [Problem(what, f"give the {what} in ETH")])
    return wei


def _span(seconds: int) -> str:
    """A duration in one unit a person reads at once."""
    if seconds >= DAY and seconds % DAY == 0:
        return f"{seconds // DAY} days" if seconds != DAY else "1 day"
    return f"{seconds} s"


def _target_watts(check: _Checker, target_kw: Number | None) -> int | None:
    if target_kw is None:
        check.fail("target_kw", "give the target reduction in kW")
        return None
    kw = _decimal(target_kw)
    if kw is None:
        check.fail("target_kw", f"the target must be a number of kW, not {target_kw!r}")
        return None
    watts = kw * 1000
    if watts <= 0:
        check.fail("target_kw", "the target must be above 0 kW")
        return None
    if watts != watts.to_integral_value():
        check.fail("target_kw", f"the target {target_kw} kW is not a whole number of watts; "
                                "the contract counts whole watts: give at most 3 decimals of kW")
        return None
    if watts > MAX_TARGET_WATTS:
        check.fail("target_kw", f"the target must be at most {MAX_TARGET_WATTS // 1000} kW")
        return None
    return int(watts)


def _rule(check: _Checker, rule: PricingRule | str) -> PricingRule:
    if isinstance(rule, PricingRule):
        return rule
    found = RULES.get(str(rule).strip().lower())
    if found is None:
        check.fail("rule", f"pricing rule {rule!r}: use uniform or pay-as-bid")
        return PricingRule.UNIFORM
    return found


def _cap_and_budget(check: _Checker, watts: int | None, duration: int | None,
                    cap_wei: int | None, budget_wei: int | None, cur: Currency = ETH) -> tuple[int, int, bool] | None:
    """(cap on the grid, budget, cap was lowered) from whichever of cap and budget was given
    (base units of ``cur``, the request's currency)."""
    least = min_cap(cur)

    def text(units: int) -> str:
        return eth_text(units) if cur == ETH else format_amount(units, cur)

    def units_text(units: int) -> str:  # the amount a person gave, in the words of its unit
        return f"{units} wei" if cur == ETH else format_amount(units, cur)

    def price_text(units: int) -> str:
        return f"{eth(units)} ETH per kWh" if cur == ETH else format_price(units, cur)
    if cap_wei is None and budget_wei is None:
        if not any(p.field in ("max_price", "budget") for p in check.problems):
            check.fail("max_price", "give a price cap per kWh or a budget (or both)")
        return None
    if budget_wei is not None and budget_wei > MAX_BUDGET_WEI:
        check.fail("budget", f"the budget must be at most {text(MAX_BUDGET_WEI)}")
        return None
    if cap_wei is not None:
        cap = round_cap(cap_wei)
        if cap < least:
            check.fail("max_price", f"a price cap of {units_text(cap_wei)} per kWh is below the least the tools "
                                    f"accept, {price_text(least)}; raise the cap")
            return None
        if cap > MAX_CAP_WEI:
            check.fail("max_price", f"the price cap must be at most {text(MAX_CAP_WEI)}/kWh")
            return None
    if watts is None or duration is None:
        return None
    if cap_wei is None:
        assert budget_wei is not None
        cap = min(round_cap(budget_wei * WS_PER_KWH // (watts * duration)), MAX_CAP_WEI)
        if cap < least:
            need = required_budget(watts, duration, least)
            check.fail("budget", f"a budget of {units_text(budget_wei)} cannot pay even {price_text(least)} "
                                 f"for the {watts * duration / WS_PER_KWH:g} kWh asked; give a budget of at least "
                                 f"{eth(need) + ' ETH' if cur == ETH else format_amount(need, cur)}, or a smaller "
                                 "target or a shorter event")
            return None
        return cap, budget_wei, False
    minimum = required_budget(watts, duration, cap)
    budget = minimum if budget_wei is None else budget_wei
    if budget < minimum:
        check.fail("budget", f"a budget of {text(budget)} is below the {text(minimum)} the full target "
                             "costs at this cap; raise it, lower the cap, or leave the budget out")
        return None
    if budget > MAX_BUDGET_WEI:
        check.fail("budget", f"the full target at this cap costs more than the contract holds "
                             f"({text(MAX_BUDGET_WEI)}); lower the cap or the target")
        return None
    return cap, budget, cap != cap_wei


def plan_request(
    *,
    target_kw: Number | None,
    now: int,
    bidding_window_s: int = 60,
    event_delay_s: int | None = None,
    event_start: int | None = None,
    event_duration_s: int = 3600,
    max_price_wei_per_kwh: int | None = None,
    max_price_eth_per_kwh: Number | None = None,
    budget_wei: int | None = None,
    budget_eth: Number | None = None,
    rule: PricingRule | str = PricingRule.UNIFORM,
    reveal_window_s: int = 0,
    report_window_s: int = 0,
    dispute_window_s: int = 0,
    bond_wei: int | None = None,
    bond_eth: Number | None = None,
    currency: Currency = ETH,
) -> RequestPlan:
    """Validate what a person asked for and turn it into contract arguments.

    ``now`` is the chain's time; bidding closes ``bidding_window_s`` after it. The event
    starts ``event_delay_s`` after bidding closes (default 0), or at the unix time
    ``event_start``. Money is given in wei or in ETH (``*_eth``), not both. Raises
    :class:`PlanError` with one problem per wrong input (rules: see the module docstring).
    ``currency``: the request's (a token's, for a request in a stablecoin); ``*_wei`` amounts are
    then its base units, and the ``*_eth`` forms are refused (the bond stays in ETH).
    """
    check = _Checker()
    watts = _target_watts(check, target_kw)
    window = check.seconds("bidding_window_s", "bidding window", bidding_window_s, 1, MAX_WINDOW_S)
    duration = check.seconds("event_duration_s", "event duration", event_duration_s, 1, MAX_DURATION_S)
    reveal = check.seconds("reveal_window_s", "reveal window", reveal_window_s, 0, MAX_WINDOW_S)
    report = check.seconds("report_window_s", "report window", report_window_s, 0, MAX_WINDOW_S)
    dispute = check.seconds("dispute_window_s", "dispute window", dispute_window_s, 0, MAX_WINDOW_S)
    chosen_rule = _rule(check, rule)
    bond = check.wei("bond", "bond", bond_wei, bond_eth)
    if bond is not None and bond > MAX_BOND_WEI:
        check.fail("bond", f"the bond must be at most {eth_text(MAX_BOND_WEI)}")
    bond = bond or 0
    if bond and reveal == 0 and report == 0:
        check.fail("bond", "a bond needs sealed bids or metered settlement: set a reveal or a report window")
    if dispute and report == 0:
        check.fail("dispute_window_s", "a dispute window needs metered settlement: set a report window too")

    deadline = now + window if window is not None else None
    delay: int | None = None
    if event_start is not None and event_delay_s is not None:
        check.fail("event_start", "give the event start once: as a time or as a delay after bidding closes")
    elif event_start is not None:
        if deadline is not None:
            delay = event_start - deadline
            if delay < 0:
                check.fail("event_start", f"the event starts {_clock(event_start)}, before bidding closes "
                                          f"({_clock(deadline)}); start it later or shorten the bidding window")
                delay = None
            elif delay > MAX_WINDOW_S:
                check.fail("event_start", f"the event must start within {_span(MAX_WINDOW_S)} of bidding close")
                delay = None
    else:
        delay = check.seconds("event_delay_s", "event delay", 0 if event_delay_s is None else event_delay_s,
                              0, MAX_WINDOW_S)
    if reveal and delay is not None and reveal > delay:
        check.fail("reveal_window_s", f"the reveal window ({reveal} s) would end after the event starts "
                                      f"({delay} s after bidding closes): the event delay must be at least "
                                      f"{reveal} s, or shorten the reveal window")

    if currency != ETH and (max_price_eth_per_kwh is not None or budget_eth is not None):
        check.fail("max_price", f"this request is in {currency.symbol}: give its cap and budget in "
                                f"{currency.symbol}, not in ETH")
    if currency != ETH and bond:
        check.fail("bond", "bonds are in ETH only: a request in a token takes no bond")
    cap_wei = check.wei("max_price", "price cap", max_price_wei_per_kwh, max_price_eth_per_kwh)
    budget_in = check.wei("budget", "budget", budget_wei, budget_eth)
    money = _cap_and_budget(check, watts, duration, cap_wei, budget_in, currency)

    if check.problems:
        raise PlanError(check.problems)
    assert watts is not None and deadline is not None and delay is not None and duration is not None
    assert money is not None
    cap, budget, rounded = money
    start = deadline + delay
    terms = Terms(reveal or 0, report or 0, dispute or 0, bond)
    return RequestPlan(watts, start, start + duration, deadline, cap, budget, chosen_rule, terms, rounded)


def _clock(ts: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def preview(plan: RequestPlan, cur: Currency = ETH) -> str:
    """A few lines describing what the request may cost and pay (amounts in ``cur``, its currency)."""

    def amount(units: int) -> str:
        return f"{eth(units)} ETH" if cur == ETH else format_amount(units, cur)

    def price(units: int) -> str:
        return f"{eth(units)} ETH/kWh" if cur == ETH else format_price(units, cur)

    hours = plan.duration / 3600
    full = plan.minimum_budget
    per_kw_at_cap = required_budget(1000, plan.duration, plan.max_price)
    lines = [
        f"Request: {plan.target_watts / 1000:.3f} kW for {hours:.2f} h "
        f"({_clock(plan.event_start)}–{_clock(plan.event_end)}), bidding closes "
        f"{_clock(plan.bidding_deadline)}, {plan.rule.name.lower()} pricing",
        f"Price cap {price(plan.max_price)} (grid step {price(tick_wei(plan.max_price))})"
        + ("; your cap was lowered onto the contract's price grid" if plan.cap_rounded else ""),
        f"Budget escrowed {amount(plan.budget)}; paying the cap for the full target costs {amount(full)} "
        f"({amount(per_kw_at_cap)} per kW); the rest is refunded when the winners are selected",
    ]
    t = plan.terms
    if t.sealed:
        lines.append(f"Sealed bids: commitments until bidding closes, reveals until {_clock(plan.reveal_deadline)}; "
                     "winners are selected after that")
    if t.metered:
        lines.append(f"Paid on measured delivery: meter reports until {t.report_window} s after the event, "
                     f"confirm or dispute within {t.dispute_window} s more; undelivered pay comes back")
    if t.metered and t.bond_wei and plan.event_start <= max(plan.bidding_deadline, plan.reveal_deadline):
        lines.append("Note: the event starts when bidding (or the reveals) close, so the winners are selected "
                     "after it starts and no shortfall penalty can apply; give notice with an event delay")
    if t.bond_wei:
        lines.append(f"Bond per consumer {eth(t.bond_wei)} ETH"
                     + (": forfeited if a commitment is not revealed" if t.sealed else "")
                     + ("; shortfall penalty out of it" if t.metered else ""))
    for fraction in (0.25, 0.5, 1.0):
        at = round_cap(int(plan.max_price * fraction)) or plan.max_price
        cost = required_budget(plan.target_watts, plan.duration, at)
        lines.append(f"  if it clears at {price(at)}: winners are promised {amount(cost)}, "
                     f"refund {amount(plan.budget - cost)}")
    return "\n".join(lines)


def send_request(dr: "DemandReduction", signer: "Signer", plan: RequestPlan,
                 token: str | None = None) -> tuple[int, dict[str, Any]]:
    """Post ``plan`` through the wrapper's ``request_reduction``; returns (request id, receipt).
    With ``token`` (an ERC-20 address) the plan's amounts are its base units: the wrapper
    approves the budget and escrows it in the token.

    Raises :class:`PlanError` if the chain's clock has passed the plan's bidding deadline
    (plan again with a fresh ``now``), or if the utility holds less of ``token`` than the
    budget (checked before anything is sent: no approval is left behind).
    """
    chain_now = int(dr.w3.eth.get_block("latest")["timestamp"])
    if chain_now >= plan.bidding_deadline:
        raise PlanError([Problem("bidding_window_s", f"bidding would have closed at {_clock(plan.bidding_deadline)}, "
                                                     "which has passed; plan the request again")])
    if token is not None:
        from .token import Erc20, is_ether

        if not is_ether(token):
            erc20 = Erc20(dr.w3, token)
            held, cur = erc20.balance_of(signer.address), erc20.currency()
            if held < plan.budget:
                raise PlanError([Problem("budget", f"the utility account holds {format_amount(held, cur)}, less than "
                                                   f"the {format_amount(plan.budget, cur)} budget; fund it first (on a "
                                                   f"dev chain: dr fund {signer.address} --usd AMOUNT --token {erc20.address})")])
    return dr.request_reduction(
        signer, plan.target_watts, plan.event_start, plan.event_end, plan.bidding_deadline, plan.max_price,
        plan.rule, budget=plan.budget, terms=plan.terms if plan.terms != Terms() else None, token=token,
    )


__all__ = [
    "MAX_BOND_WEI", "MAX_DURATION_S", "MAX_WINDOW_S", "MIN_CAP_WEI_PER_KWH", "PlanError", "min_cap", "Problem", "RequestPlan", "eth_text", "eth_to_wei",
    "plan_request", "preview", "send_request",
]
