"""Issue 17: the utility settles metered requests from interval meter data (``--meter-db``).

A real chain (the session's ganache), a real SQLite meter store: each winner's delivery is
computed with the named baseline, the report confirmed or disputed by the one judge, the
record written (``mv.records``), one line logged per winner. A winner without meter data is
not confirmed; the contract's rules apply to it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from demand_response.contract import Stage
from demand_response.mv import MeterStore
from demand_response.mv.records import read_records
from demand_response.utility import UtilityDaemon, plan_request, send_request

CAP = 128 * 10**14
STEP = 900


def _chain_now(env) -> int:
    return int(env.w3.eth.get_block("latest")["timestamp"])


def _past(env, moment: int) -> None:
    env.chain.rpc("evm_increaseTime", [max(1, moment - _chain_now(env) + 1)])
    env.chain.rpc("evm_mine", [])


def _history(start: int, kw_before: float, kw_during: float) -> list[tuple[int, int, int]]:
    """Two hours at ``kw_before`` then one 15-minute event interval at ``kw_during``."""
    rows = [(start - 7200 + i * STEP, STEP, int(kw_before * 250)) for i in range(8)]
    return rows + [(start, STEP, int(kw_during * 250))]


def _metered_request(env, tmp_path: Path, *, with_data: list[int]) -> tuple[int, int, Path]:
    """A metered request on a 15-minute boundary; three winners bid 1 kW each; the winners
    of ``with_data`` have 1 kW before and 0.5 kW during the event in the meter store."""
    now = max(env.now(), int(time.time()))
    start = (now + 60) // STEP * STEP + 2 * STEP
    plan = plan_request(target_kw=3.0, now=now, bidding_window_s=30, event_start=start, event_duration_s=STEP,
                        max_price_wei_per_kwh=CAP, report_window_s=600, dispute_window_s=600)
    rid, _ = send_request(env.dr, env.utility, plan)
    for c in env.consumers[:3]:
        env.dr.submit_bids(c, rid, [1000], [CAP // 2])
    db = tmp_path / "meters.sqlite"
    with MeterStore.open(db) as store:
        store.import_batches({env.consumers[i].address: _history(start, 1.0, 0.5) for i in with_data})
    _past(env, plan.bidding_deadline)
    env.dr.select_winners(env.utility, rid)
    _past(env, start + STEP)
    return rid, start, db


def _daemon(env, tmp_path: Path, db: Path, **kw) -> UtilityDaemon:
    return UtilityDaemon(env.dr, env.utility, state_path=tmp_path / "cursor.json", start_block=0,
                         chain_id=env.chain.chain_id, auto_withdraw=False, meter_db=db,
                         baseline="meter-before-after", records_dir=tmp_path / "records", **kw)


def test_reports_are_confirmed_or_disputed_against_the_interval_data_and_recorded(
        env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rid, start, db = _metered_request(env, tmp_path, with_data=[0, 1])
    honest, greedy, silent = (c.address for c in env.consumers[:3])
    env.dr.report_delivery(env.consumers[0], rid, 450)   # under the 500 W the meter shows
    env.dr.report_delivery(env.consumers[1], rid, 900)   # over it
    env.dr.report_delivery(env.consumers[2], rid, 1000)  # no meter data for this one
    daemon = _daemon(env, tmp_path, db)
    daemon.metered.add(rid)
    with caplog.at_level(logging.INFO):
        daemon._tick_metered()
    assert env.dr.participant_of(rid, honest).stage == Stage.SETTLED
    assert env.dr.participant_of(rid, honest).delivered_watts == 450
    assert env.dr.participant_of(rid, greedy).stage == Stage.SETTLED
    assert env.dr.participant_of(rid, greedy).delivered_watts == 500  # disputed down to the meter's figure
    assert env.dr.participant_of(rid, silent).stage == Stage.REPORTED  # waits for its data, not confirmed
    assert [r["address"] for r in daemon.judged] == sorted([honest, greedy])
    assert f"{honest[:10]}: baseline 0.250 kWh, metered 0.125 kWh, delivered 0.500 kW" in caplog.text
    assert "meter-before-after" in caplog.text
    stored = {r["address"]: r for r in read_records(tmp_path / "records", env.chain.chain_id, env.dr.address, rid)}
    assert stored[greedy]["verdict"] == "disputed" and stored[greedy]["reported_watts"] == 900
    assert stored[honest]["verdict"] == "confirmed"
    assert stored[honest]["intervals"] == [[start, STEP, 250, 125]]
    # after the report deadline the winner without data gets one clear line and no confirmation
    _past(env, env.dr.terms_of(rid).report_deadline)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        daemon._tick_metered()
    assert f"{silent[:10]}: no delivery computed from the meter data" in caplog.text
    assert "not in the meter store" in caplog.text
    assert env.dr.participant_of(rid, silent).stage == Stage.REPORTED


def test_a_portfolio_pays_each_winner_a_pro_rata_share_of_the_summed_delivery(env, tmp_path: Path) -> None:
    rid, _, db = _metered_request(env, tmp_path, with_data=[0, 1, 2])
    for c in env.consumers[:3]:
        env.dr.report_delivery(c, rid, 600)
    daemon = _daemon(env, tmp_path, db, portfolio=True, tolerance_watts=100)
    daemon.metered.add(rid)
    daemon._tick_metered()
    assert [r["share_watts"] for r in daemon.judged] == [500, 500, 500]
    assert all(r["portfolio"] and r["verdict"] == "confirmed" for r in daemon.judged)  # 600 <= 500 + 100
    assert all(env.dr.participant_of(rid, c.address).delivered_watts == 600 for c in env.consumers[:3])


def test_a_hostile_meter_store_path_fails_each_winner_with_one_line_not_a_crash(
        env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rid, _, _ = _metered_request(env, tmp_path, with_data=[])
    env.dr.report_delivery(env.consumers[0], rid, 500)
    daemon = _daemon(env, tmp_path, tmp_path / "no-such-dir" / "m.sqlite")
    daemon.metered.add(rid)
    _past(env, env.dr.terms_of(rid).report_deadline)
    with caplog.at_level(logging.INFO):
        daemon._tick_metered()
    assert daemon.judged == []
    assert "no delivery computed from the meter data" in caplog.text
    assert env.dr.participant_of(rid, env.consumers[0].address).stage == Stage.REPORTED


def test_a_restarted_daemon_keeps_the_published_records_and_their_verdicts(env, tmp_path: Path) -> None:
    rid, _, db = _metered_request(env, tmp_path, with_data=[0])
    env.dr.report_delivery(env.consumers[0], rid, 450)
    first = _daemon(env, tmp_path, db)
    first.metered.add(rid)
    first._tick_metered()
    assert [r["verdict"] for r in first.judged] == ["confirmed"]
    again = _daemon(env, tmp_path, db)
    again.metered.add(rid)
    again._tick_metered()
    assert [(r["address"], r["verdict"]) for r in again.judged] == [(env.consumers[0].address, "confirmed")]
    stored = read_records(tmp_path / "records", env.chain.chain_id, env.dr.address, rid)
    assert [r["verdict"] for r in stored] == ["confirmed"]


def test_a_winner_that_did_not_report_is_metered_and_the_record_is_published_on_chain(env, tmp_path: Path) -> None:
    """Issue 17: the report is optional. The utility meters the winner from its data with
    its calendar, and the DeliveryMetered event carries the method, its parameters and the
    data hash (no meter id): the household recomputes from that alone."""
    from demand_response.mv.calendar import Calendar
    from demand_response.mv.fingerprint import Fingerprint

    rid, _, db = _metered_request(env, tmp_path, with_data=[0])
    who = env.consumers[0].address
    daemon = _daemon(env, tmp_path, db, calendar=Calendar("+02:00", ("2025-12-25",)))
    daemon.metered.add(rid)
    daemon._tick_metered()
    p = env.dr.participant_of(rid, who)
    assert (p.stage, p.delivered_watts) == (Stage.SETTLED, 500)
    (published,) = env.dr.deliveries_metered(rid, who)
    record = Fingerprint.from_evidence(published["evidence"], who)
    assert (record.method, record.delivered_watts, record.params["utc_offset_s"]) == ("meter-before-after", 500, 7200)
    assert who.lower()[2:] not in published["evidence"].decode().lower()
    (stored,) = read_records(tmp_path / "records", env.chain.chain_id, env.dr.address, rid)
    assert (stored["verdict"], stored["metered_watts"], stored["reported_watts"]) == ("metered", 500, None)
    # The two winners without meter data are left alone: the contract's rules apply to them.
    assert [env.dr.participant_of(rid, c.address).stage for c in env.consumers[1:3]] == [Stage.BID, Stage.BID]
