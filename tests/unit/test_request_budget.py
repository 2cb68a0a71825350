"""Bug 13 of issue 14: a tiny budget printed every figure as 0.000000 ETH and was posted
anyway. A request must be able to pay at least 0.000001 ETH per kWh."""

from __future__ import annotations

import pytest

from demand_response.errors import PlanError, UserError
from demand_response.utility import MIN_CAP_WEI_PER_KWH, plan_request, preview


def test_a_budget_that_cannot_pay_a_visible_price_per_kwh_is_refused_in_one_line() -> None:
    with pytest.raises(PlanError) as caught:
        plan_request(target_kw=8.0, now=1_000, budget_wei=10**9)
    message = str(caught.value)
    assert message == ("a budget of 1000000000 wei cannot pay even 0.000001 ETH per kWh for the 8 kWh asked; "
                       "give a budget of at least 0.000008 ETH, or a smaller target or a shorter event")
    assert isinstance(caught.value, UserError)


def test_a_price_cap_below_the_smallest_shown_price_is_refused() -> None:
    with pytest.raises(PlanError, match="below the least the tools accept, 0.000001 ETH per kWh"):
        plan_request(target_kw=1.0, now=1_000, max_price_wei_per_kwh=128 * 1000)


def test_the_least_budget_named_in_the_refusal_is_accepted_and_prints_no_zero_figures() -> None:
    plan = plan_request(target_kw=8.0, now=1_000, budget_wei=8 * MIN_CAP_WEI_PER_KWH)
    assert plan.max_price == MIN_CAP_WEI_PER_KWH and plan.budget == 8 * 10**12
    assert "Price cap 0.000001 ETH/kWh" in preview(plan) and "Budget escrowed 0.000008 ETH" in preview(plan)
