"""The request life cycle: one state and phase vocabulary, a pure function of chain data."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from demand_response.lifecycle import PHASES, STATE_OF_PHASE, STATES, lifecycle, phase


@dataclass(frozen=True)
class _Info:
    status: int = 1
    bidding_deadline: int = 100
    event_start: int = 200
    event_end: int = 300
    accepted_watts: int = 0
    claimed_watts: int = 0


@dataclass(frozen=True)
class _Terms:
    reveal_deadline: int = 0
    report_deadline: int = 0
    dispute_deadline: int = 0


OPEN = _Info()
SELECTED = _Info(status=2, accepted_watts=5000)
SEALED = _Terms(reveal_deadline=150)
METERED = _Terms(report_deadline=400, dispute_deadline=500)


def test_an_open_request_is_bidding_until_its_deadline_then_awaits_selection() -> None:
    assert phase(OPEN, _Terms(), 100) == "bidding"
    assert lifecycle(OPEN, _Terms(), 101) == lifecycle(OPEN, SEALED, 151)
    assert lifecycle(OPEN, _Terms(), 101).state == "closed"


def test_a_sealed_request_is_revealing_between_bidding_and_its_reveal_deadline() -> None:
    assert lifecycle(OPEN, SEALED, 150).phase == "revealing"
    assert lifecycle(OPEN, SEALED, 150).state == "open"


def test_selected_winners_nobody_paid_is_never_called_settled() -> None:
    for now in (150, 250, 350, 10_000):
        life = lifecycle(SELECTED, _Terms(), now)
        assert life.state == "selected" and life.phase != "settled"
        assert life.selected
    assert [phase(SELECTED, _Terms(), t) for t in (150, 250, 350)] == ["scheduled", "event", "settling"]


def test_a_request_is_settled_once_every_accepted_watt_is_paid() -> None:
    paid = replace(SELECTED, claimed_watts=5000)
    assert lifecycle(paid, _Terms(), 150).state == "settled"
    assert lifecycle(paid, METERED, 450).phase == "settled"


def test_a_selection_that_accepted_nothing_is_settled_at_once() -> None:
    assert lifecycle(replace(SELECTED, accepted_watts=0), _Terms(), 150).phase == "settled"


def test_a_metered_request_reports_then_disputes_then_settles() -> None:
    part = replace(SELECTED, claimed_watts=1000)
    assert [phase(part, METERED, t) for t in (350, 400, 450, 500, 501)] == [
        "reporting", "reporting", "disputing", "disputing", "settling"]


def test_a_cancelled_request_is_cancelled_whatever_the_time() -> None:
    assert lifecycle(_Info(status=3), SEALED, 0).state == "cancelled"


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown request status"):
        phase(_Info(status=0), _Terms(), 0)


def test_every_phase_has_a_meaning_and_a_documented_state() -> None:
    assert set(PHASES) == set(STATE_OF_PHASE)
    assert set(STATE_OF_PHASE.values()) == set(STATES)
