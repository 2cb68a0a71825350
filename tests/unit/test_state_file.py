"""The daemons' state file: one typed record per writer, in the layout older versions wrote."""

from __future__ import annotations

import json
from pathlib import Path

from demand_response.consumer.notes import AgentNotes, RequestNote
from demand_response.consumer.records import result_record
from demand_response.listener import Cursor, StateFile

A, B = "0x" + "aa" * 20, "0x" + "bb" * 20


def test_each_writer_keeps_its_own_typed_record_and_one_save_writes_them_all(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "cursor.json")
    cursor = state.section(("cursor",), Cursor.from_json)
    a = state.section(("agents", A), AgentNotes.from_json)
    b = state.section(("agents", B), AgentNotes.from_json)
    cursor.address, cursor.next_block = "0xC0", 42
    a.note(7).bid_txs = ["0x01"]
    b.note(7).done = True
    state.save()

    again = StateFile(tmp_path / "cursor.json")
    assert again.section(("cursor",), Cursor.from_json).next_block == 42
    assert again.section(("agents", A), AgentNotes.from_json).get(7) == RequestNote(bid_txs=["0x01"])
    assert again.section(("agents", B), AgentNotes.from_json).get(7) == RequestNote(done=True)


def test_a_state_file_written_by_an_older_version_is_read(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({
        "cursor": {"address": "0xC0", "next_block": 9, "seen": {"0xab:0": [8, "0xh", "ReductionRequested"]},
                   "head": [8, "0xh"]},
        "agents": {A: {"requests": {"3": {"requested_block": 5, "terms": "sealed", "bid_txs": ["0x02"],
                                          "bid_at": 100, "offers": [[1000, 128]], "done": False}}}},
    }))
    state = StateFile(path)
    cursor = state.section(("cursor",), Cursor.from_json)
    assert (cursor.next_block, cursor.head, list(cursor.seen)) == (9, [8, "0xh"], ["0xab:0"])
    note = state.section(("agents", A), AgentNotes.from_json).get(3)
    assert note == RequestNote(5, "sealed", ["0x02"], 100, [[1000, 128]], None, False)


def test_a_corrupt_state_file_starts_empty_rather_than_failing(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert StateFile(path).section(("cursor",), Cursor.from_json) == Cursor()


def test_a_cancelled_record_has_no_claim_fields_and_a_metered_one_keeps_its_figures() -> None:
    ids = dict(chain_id=1337, contract="0xC0", request_id=3, account=A, label="c")
    cancelled = result_record(status="cancelled", bid_txs=["0x02"], **ids)
    assert cancelled["status"] == "cancelled" and cancelled["payout_wei"] == 0 and "claim_tx" not in cancelled
    metered = result_record(status="won", accepted_watts=1500, payout_wei=10, delivered_watts=1000,
                            penalty_wei=2, **ids)
    assert (metered["accepted_kw"], metered["delivered_watts"], metered["penalty_wei"]) == (1.5, 1000, 2)
    assert metered["withdraw_tx"] is None and "recorded_at" in metered


def test_a_zero_in_a_note_survives_the_round_trip() -> None:
    notes = AgentNotes()
    notes.note(1).requested_block, notes.note(1).skipped = 0, 0
    again = AgentNotes.from_json(notes.to_json()).get(1)
    assert again is not None and (again.requested_block, again.skipped) == (0, 0)
