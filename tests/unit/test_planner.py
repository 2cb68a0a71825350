"""The request planner: what a person asks for becomes contract arguments, or one problem per
wrong input (rules in demand_response/planner.py's docstring)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from demand_response.market import TICKS, PricingRule, required_budget
from demand_response.planner import (MAX_BOND_WEI, MAX_WINDOW_S, MIN_CAP_WEI_PER_KWH, PlanError, RequestPlan,
                                     plan_request, preview)

NOW = 1_700_000_000
CAP = 128 * 10**12  # 0.000128 ETH/kWh


def _plan(**kwargs: object) -> RequestPlan:
    values: dict = dict(target_kw=5, now=NOW, max_price_wei_per_kwh=CAP)
    values.update(kwargs)
    return plan_request(**values)


def _problems(**kwargs: object) -> dict[str, str]:
    with pytest.raises(PlanError) as caught:
        _plan(**kwargs)
    return {p.field: p.message for p in caught.value.problems}


def test_a_plain_request_becomes_watts_unix_times_and_wei() -> None:
    plan = _plan(target_kw="2.5", bidding_window_s=60, event_delay_s=120, event_duration_s=1800)
    assert plan.target_watts == 2500
    assert (plan.bidding_deadline, plan.event_start, plan.event_end) == (NOW + 60, NOW + 180, NOW + 1980)
    assert plan.max_price == CAP and plan.budget == required_budget(2500, 1800, CAP) == plan.minimum_budget
    assert plan.rule is PricingRule.UNIFORM and not plan.terms.sealed and not plan.cap_rounded


@pytest.mark.parametrize("typed", [1.001, "1.001", Decimal("1.001")])
def test_the_target_is_converted_exactly_whatever_the_number_type(typed: object) -> None:
    # 1.001 * 1000 is 1000.9999999999999 in binary floating point: truncating it would ask for 1000 W
    assert _plan(target_kw=typed).target_watts == 1001


@pytest.mark.parametrize("typed", [1.0005, "0.0004", "2.5555"])
def test_a_target_finer_than_a_watt_is_refused_not_rounded(typed: object) -> None:
    assert "not a whole number of watts" in _problems(target_kw=typed)["target_kw"]


@pytest.mark.parametrize("typed, words", [
    (0, "above 0 kW"), (-3, "above 0 kW"), ("lots", "a number of kW"), (float("nan"), "a number of kW"),
    (float("inf"), "a number of kW"), (None, "give the target"), (True, "a number of kW"),
    (2**64, "at most"),
])
def test_bad_targets_get_one_clear_problem(typed: object, words: str) -> None:
    assert words in _problems(target_kw=typed)["target_kw"]


def test_a_reveal_window_longer_than_the_delay_is_refused_and_the_start_never_moves() -> None:
    message = _problems(reveal_window_s=300, event_delay_s=60)["reveal_window_s"]
    assert "would end after the event starts" in message and "at least 300 s" in message
    plan = _plan(reveal_window_s=300, event_delay_s=300)
    assert plan.event_start == plan.bidding_deadline + 300 == plan.reveal_deadline


def test_an_absolute_start_is_kept_and_checked_against_bidding_close_and_reveals() -> None:
    plan = _plan(event_start=NOW + 4000, bidding_window_s=60)
    assert plan.event_start == NOW + 4000 and plan.event_end == NOW + 4000 + 3600
    assert "before bidding closes" in _problems(event_start=NOW + 30, bidding_window_s=60)["event_start"]
    assert "reveal window" in _problems(event_start=NOW + 100, bidding_window_s=60,
                                        reveal_window_s=41)["reveal_window_s"]
    assert "once" in _problems(event_start=NOW + 4000, event_delay_s=0)["event_start"]


def test_the_cap_goes_down_onto_the_price_grid_and_says_so() -> None:
    plan = _plan(max_price_wei_per_kwh=CAP + 127)
    assert plan.max_price == CAP and plan.cap_rounded
    assert "lowered onto the contract's price grid" in preview(plan)
    assert "below the least the tools accept" in _problems(max_price_wei_per_kwh=TICKS - 1)["max_price"]


def test_money_in_eth_is_exact_and_finer_than_a_wei_is_refused() -> None:
    plan = _plan(max_price_wei_per_kwh=None, max_price_eth_per_kwh=0.1, budget_eth="1")
    assert plan.max_price == 10**17 and plan.budget == 10**18
    assert "finer than 1 wei" in _problems(max_price_wei_per_kwh=None, max_price_eth_per_kwh="1e-19")["max_price"]
    assert "not both" in _problems(budget_wei=10**18, budget_eth=1)["budget"]
    assert "must not be negative" in _problems(budget_eth=-1)["budget"]


def test_a_budget_alone_buys_the_highest_grid_cap_it_covers() -> None:
    plan = _plan(max_price_wei_per_kwh=None, budget_wei=10**16, target_kw=5, event_duration_s=3600)
    assert plan.budget == 10**16 and plan.max_price % TICKS == 0
    assert required_budget(5000, 3600, plan.max_price) <= 10**16 < required_budget(5000, 3600, plan.max_price + TICKS)
    assert "cannot pay even" in _problems(max_price_wei_per_kwh=None, budget_wei=1)["budget"]


def test_a_budget_below_the_full_target_at_the_cap_is_refused() -> None:
    assert "below the" in _problems(budget_wei=required_budget(5000, 3600, CAP) - 1)["budget"]


def test_a_cap_or_budget_that_cannot_pay_a_visible_price_per_kwh_is_refused() -> None:
    """Bug 13: below 0.000001 ETH/kWh every figure printed as 0.000000 ETH and was posted anyway."""
    message = _problems(max_price_wei_per_kwh=None, target_kw=8, budget_wei=10**9)["budget"]
    assert message == ("a budget of 1000000000 wei cannot pay even 0.000001 ETH per kWh for the 8 kWh asked; "
                       "give a budget of at least 0.000008 ETH, or a smaller target or a shorter event")
    assert "0.000001 ETH per kWh; raise the cap" in _problems(max_price_wei_per_kwh=MIN_CAP_WEI_PER_KWH - 1)["max_price"]
    plan = _plan(max_price_wei_per_kwh=None, target_kw=8, budget_wei=8 * MIN_CAP_WEI_PER_KWH)
    assert plan.max_price == MIN_CAP_WEI_PER_KWH
    assert "Price cap 0.000001 ETH/kWh" in preview(plan) and "Budget escrowed 0.000008 ETH" in preview(plan)


def test_neither_cap_nor_budget_is_one_problem() -> None:
    assert _problems(max_price_wei_per_kwh=None) == {"max_price": "give a price cap per kWh or a budget (or both)"}


@pytest.mark.parametrize("kwargs, field, words", [
    (dict(bond_wei=10**15), "bond", "a bond needs sealed bids"),
    (dict(dispute_window_s=60), "dispute_window_s", "a dispute window needs metered settlement"),
    (dict(reveal_window_s=-1), "reveal_window_s", "between 0 s and 30 days"),
    (dict(report_window_s=MAX_WINDOW_S + 1), "report_window_s", "between 0 s and 30 days"),
    (dict(report_window_s=60, bond_wei=MAX_BOND_WEI + 1), "bond", "at most"),
    (dict(bidding_window_s=0), "bidding_window_s", "between 1 s and 30 days"),
    (dict(bidding_window_s=1.5), "bidding_window_s", "whole number of seconds"),
    (dict(event_duration_s=0), "event_duration_s", "between 1 s and 7 days"),
    (dict(event_delay_s="soon"), "event_delay_s", "whole number of seconds"),
    (dict(rule="cheapest"), "rule", "use uniform or pay-as-bid"),
])
def test_terms_that_make_no_sense_are_refused(kwargs: dict, field: str, words: str) -> None:
    assert words in _problems(**kwargs)[field]


def test_every_wrong_input_is_reported_at_once_each_on_its_field() -> None:
    with pytest.raises(PlanError) as caught:
        plan_request(target_kw="0.0001", now=NOW, bidding_window_s=0, max_price_wei_per_kwh=None,
                     rule="auction", dispute_window_s=5)
    error = caught.value
    assert set(p.field for p in error.problems) == {"target_kw", "bidding_window_s", "rule", "dispute_window_s",
                                                      "max_price"}
    assert error.for_field("rule") == ["pricing rule 'auction': use uniform or pay-as-bid"]
    assert isinstance(error, ValueError) and "\n" not in str(error)


@pytest.mark.parametrize("name", ["uniform", "pay-as-bid", "pay_as_bid", "PAY-AS-BID"])
def test_the_rule_is_read_as_a_person_writes_it(name: str) -> None:
    assert _plan(rule=name).rule == (PricingRule.UNIFORM if name == "uniform" else PricingRule.PAY_AS_BID)


def test_a_sealed_metered_plan_previews_its_terms() -> None:
    plan = _plan(bidding_window_s=60, event_delay_s=90, reveal_window_s=30, report_window_s=600,
                 dispute_window_s=300, bond_wei=10**15)
    assert plan.event_start == NOW + 60 + 90 and plan.terms.sealed and plan.terms.metered
    text = preview(plan)
    assert "Sealed bids" in text and "measured delivery" in text and "Bond per consumer 0.001" in text
    assert json.dumps(plan.terms.as_tuple()) == "[30, 600, 300, 1000000000000000]"
