"""``SPONSOR_BOOK``: the utility daemon sponsors each new request's book as soon as it hears the
request, so that no bidder pays for the first write of a book slot (docs/gas.md); off by
default."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from demand_response.contract import ALL_BOOK_SLOTS
from demand_response.utility import UtilityDaemon, plan_request, send_request

CAP = 128 * 10**12


def _sponsorships(env, rid: int) -> list[dict]:
    logs = env.dr.contract.events.BookSponsored().get_logs(argument_filters={"requestId": rid}, from_block=0)
    return [dict(e["args"]) for e in logs]


def _run_until(daemon: UtilityDaemon, done, timeout: float = 30.0) -> None:
    """Run ``daemon`` in a thread until ``done()`` holds (or the timeout), then stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.mark.parametrize("sponsor", [True, False], ids=["SPONSOR_BOOK on", "off (default)"])
def test_the_daemon_sponsors_a_new_requests_book_only_when_asked(env, tmp_path: Path, sponsor: bool) -> None:
    now = max(int(env.w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=1.0, now=now, bidding_window_s=600, event_duration_s=600, max_price_wei_per_kwh=CAP)
    start = env.w3.eth.block_number
    rid, _ = send_request(env.dr, env.utility, plan)
    daemon = UtilityDaemon(env.dr, env.utility, state_path=tmp_path / "cursor.json", start_block=start,
                           chain_id=env.chain.chain_id, auto_withdraw=False, only={rid}, poll_interval=0.1,
                           sponsor_book=sponsor)
    _run_until(daemon, lambda: rid in daemon.open and (not sponsor or _sponsorships(env, rid)))
    assert rid in daemon.open
    expected = [{"requestId": rid, "sponsor": env.utility.address, "slotMask": ALL_BOOK_SLOTS}] if sponsor else []
    assert _sponsorships(env, rid) == expected
    # The first bidder at a slot now rewrites a non-zero word: no 22,100-gas write from zero.
    first = env.dr.submit_bids(env.consumers[0], rid, [1000], [CAP // 2])["gasUsed"]
    second = env.dr.submit_bids(env.consumers[1], rid, [1000], [CAP // 2])["gasUsed"]
    assert (abs(first - second) < 100) == sponsor


def test_a_request_heard_twice_is_announced_and_sponsored_once(env, tmp_path: Path, caplog) -> None:
    import logging

    from demand_response.listener import Event

    now = max(int(env.w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=1.0, now=now, bidding_window_s=600, event_duration_s=600, max_price_wei_per_kwh=CAP)
    rid, _ = send_request(env.dr, env.utility, plan)
    daemon = UtilityDaemon(env.dr, env.utility, state_path=tmp_path / "cursor.json", start_block=0,
                           chain_id=env.chain.chain_id, auto_withdraw=False, poll_interval=0.1, sponsor_book=True)
    heard = Event("ReductionRequested", {"requestId": rid}, 1, "0x" + "00" * 32, "0x" + "11" * 32, 0)
    with caplog.at_level(logging.INFO, logger="demand_response"):
        daemon._on_event(heard)
        daemon._on_event(heard)  # the same log read again (push and poll, a re-read after a reorg check)
    assert caplog.text.count(f"utility: watching request {rid} ") == 1
    assert len(_sponsorships(env, rid)) == 1 and rid in daemon.open
