"""The agent's notes keep what each transaction cost, across a save and a restart."""

from __future__ import annotations

import json

from demand_response.consumer.core import participation_plan
from demand_response.consumer.notes import AgentNotes
from demand_response.fees import PLANS


def test_the_cost_of_each_transaction_survives_a_round_trip_through_json() -> None:
    notes = AgentNotes()
    notes.note(7).spent.update({"0xaa": 60_901 * 10**9, "0xbb": 85_690 * 10**9})
    again = AgentNotes.from_json(json.loads(json.dumps(notes.to_json())))
    assert again.note(7).spent == {"0xaa": 60_901 * 10**9, "0xbb": 85_690 * 10**9}
    assert again.note(7).gas_wei == (60_901 + 85_690) * 10**9


def test_a_hand_edited_or_garbled_spent_entry_is_left_out_not_trusted() -> None:
    raw = {"requests": {"3": {"spent": {"0xaa": 5, "0xbb": -1, "0xcc": "9", "0xdd": True, "0xee": 1.5}},
                        "4": {"spent": ["not", "a", "map"]}}}
    notes = AgentNotes.from_json(raw)
    assert notes.note(3).spent == {"0xaa": 5} and notes.note(3).gas_wei == 5
    assert notes.note(4).spent == {}


def test_a_note_without_spending_writes_no_spent_field() -> None:
    notes = AgentNotes()
    notes.note(1).requested_block = 5
    assert notes.to_json() == {"requests": {"1": {"requested_block": 5}}}


def test_the_fee_check_prices_the_transactions_each_market_needs() -> None:
    assert participation_plan() == PLANS["open"]
    assert [s.name for s in participation_plan(metered=True)] == ["bid"]  # the utility meters and pays
    assert [s.name for s in participation_plan(metered=True, bond=True)] == ["post bond", "bid"]
    assert [s.name for s in participation_plan(metered=True, bond=True, report=True)] == [
        "post bond", "bid", "report delivery"]
    assert [s.name for s in participation_plan(sealed=True)] == ["commit with bond", "reveal", "claim", "withdraw"]
    # Issue 15: at most two household transactions per sealed and metered event.
    assert [s.name for s in participation_plan(sealed=True, metered=True, bond=True)] == ["commit with bond", "reveal"]


def test_a_request_found_joined_on_chain_is_remembered_as_joined() -> None:
    notes = AgentNotes()
    notes.note(2).joined = True
    assert AgentNotes.from_json(json.loads(json.dumps(notes.to_json()))).note(2).joined
