"""OpenADR 2.0b: a real OpenLEADR VTN and real VENs on loopback, with a real chain (anvil).

request → advance notice → bids → selection → dispatch to the winners' VENs → opt-in/out →
telemetry → settlement on chain; a cancellation; a VTN restart that keeps registrations;
hostile registrations.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest
from web3 import Web3

from demand_response import devchain
from demand_response.chain import Signer
from demand_response.contract import DemandReduction, Status
from demand_response.openadr.context import MarketContext, OpenAdrError, ven_name_for
from demand_response.openadr.oadr3 import Oadr3Store
from demand_response.openadr.store import OPT_IN, OPT_OUT
from demand_response.openadr.ven import ConsumerVen
from demand_response.openadr.vtn import DEFAULT_VTN_ID, Telemetry, UtilityVtn

from openadr_helpers import CAP, POLL_S, REPORT_S, wait_for

def _vtn(dr: DemandReduction, tmp_path: Path, port: int, **kwargs) -> UtilityVtn:
    return UtilityVtn(dr, tmp_path / "vtn.sqlite", port=port, poll_interval=POLL_S,
                      report_interval=REPORT_S, **kwargs).start()


def _ven(vtn: UtilityVtn, key: str, **kwargs) -> ConsumerVen:
    return ConsumerVen(vtn.url, vtn.vtn_id, key, programme=vtn.programme(), sampling_interval=REPORT_S,
                       **kwargs).start()


def _request(anvil: devchain.DevChain, w3: Web3, dr: DemandReduction, utility: Signer, target: int) -> int:
    anvil.rpc("evm_mine", [])
    now = w3.eth.get_block("latest")["timestamp"]
    request_id, _ = dr.request_reduction(utility, target, now + 90, now + 90 + 3600, now + 30, CAP, 0, None)
    return request_id


def _enrol(dr: DemandReduction, utility: Signer, keys: list[str]) -> list[Signer]:
    signers = [Signer.from_key(dr.w3, k) for k in keys]
    for signer in signers:
        dr.enrol(utility, signer.address)
    return signers


def test_a_winner_hears_its_award_opts_in_reports_power_and_is_paid_on_chain(anvil, w3, dr, utility, keys, tmp_path):
    alice, bob = _enrol(dr, utility, keys[1:3])
    readings: list[Telemetry] = []
    opts: list[tuple[str, str]] = []
    vtn = _vtn(dr, tmp_path, devchain.free_port(), on_telemetry=readings.append,
               on_opt=lambda event, opt: opts.append((event.address, opt)))
    ven_a = _ven(vtn, keys[1], read_power=lambda: 1500.0)
    ven_b = _ven(vtn, keys[2], decide=lambda award: False)  # bob will not shed: opts out
    try:
        assert {v.address for v in vtn.registered()} == {alice.address, bob.address}

        rid = _request(anvil, w3, dr, utility, target=3000)
        vtn.announce(rid)
        notice = ven_a.next_award(kind="notice")
        assert notice.context == MarketContext(w3.eth.chain_id, dr.address, rid)
        assert str(notice.context) == f"dr://{w3.eth.chain_id}/{dr.address}/{rid}"
        assert notice.watts == 3000
        assert ven_b.next_award(kind="notice").request_id == rid

        dr.submit_bids(alice, rid, [2000], [10**12])
        dr.submit_bids(bob, rid, [2000], [2 * 10**12])
        anvil.rpc("evm_increaseTime", [31])
        anvil.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        assert dr.get_request(rid).status == Status.SETTLED

        sent = vtn.dispatch(rid)
        assert set(sent) == {alice.address, bob.address}
        award_a = ven_a.next_award(kind="dispatch")
        assert (award_a.request_id, award_a.watts) == (rid, 2000)
        info = dr.get_request(rid)
        assert award_a.start.timestamp() == info.event_start and award_a.end.timestamp() == info.event_end
        assert ven_b.next_award(kind="dispatch").watts == 1000  # the marginal bid, in part

        wait_for(lambda: len(opts) == 2, what="both opt responses")
        assert sorted(opts) == sorted([(alice.address, OPT_IN), (bob.address, OPT_OUT)])
        assert vtn.expected_under_delivery(rid) == {bob.address: 1000}

        reading = wait_for(lambda: next((r for r in readings if r.address == alice.address), None),
                           what="alice's telemetry")
        assert reading.watts == 1500.0 and reading.ven_id == ven_a.ven_id
        assert all(r.address != bob.address for r in readings)  # bob offered no telemetry

        before = dr.owed(alice.address)
        dr.claim(alice, rid, [b.bid_id for b in dr.bids_of(rid, alice.address)])
        price = dr.get_request(rid).clearing_price  # uniform price: bob's marginal bid sets it
        assert price == 2 * 10**12
        assert dr.owed(alice.address) - before == 2000 * 3600 * price // 3_600_000
    finally:
        ven_a.stop()
        ven_b.stop()
        vtn.stop()


def test_a_cancelled_request_cancels_its_events_at_the_ven_and_in_the_3_0_api(anvil, w3, dr, utility, keys, tmp_path):
    (alice,) = _enrol(dr, utility, keys[1:2])
    api = Oadr3Store(tmp_path / "oadr3.sqlite")
    vtn = _vtn(dr, tmp_path, devchain.free_port(), oadr3=api)
    ven = _ven(vtn, keys[1])
    try:
        rid = _request(anvil, w3, dr, utility, target=1000)
        vtn.announce(rid)
        stop = threading.Event()
        heard_first = next(ven.iter_awards(stop))
        assert heard_first.kind == "notice" and not heard_first.cancelled
        context = f"dr://{w3.eth.chain_id}/{dr.address}/{rid}"
        assert [e["eventName"] for e in api.find("EVENT")] == [context]
        dr.cancel_request(utility, rid)
        assert vtn.cancel(rid) == 1
        heard = ven.next_award(kind="notice")
        assert heard.cancelled and heard.request_id == rid
        assert [e.status for e in vtn.store.events(rid)] == ["cancelled"]
        assert vtn.cancel(rid) == 0  # nothing left to cancel
        assert api.find("EVENT") == []
    finally:
        ven.stop()
        vtn.stop()
        api.close()


def test_a_restarted_vtn_keeps_registrations_and_dispatches_to_a_known_ven(anvil, w3, dr, utility, keys, tmp_path):
    (alice,) = _enrol(dr, utility, keys[1:2])
    port = devchain.free_port()
    vtn = _vtn(dr, tmp_path, port)
    ven = _ven(vtn, keys[1])
    ven_id = ven.ven_id
    vtn.stop()
    opts: list[str] = []
    vtn = _vtn(dr, tmp_path, port, on_opt=lambda event, opt: opts.append(opt))
    try:
        assert [(v.ven_id, v.address) for v in vtn.registered()] == [(ven_id, alice.address)]
        rid = _request(anvil, w3, dr, utility, target=500)
        # the VEN kept polling with its ven_id across the restart: the new VTN knows it
        vtn.dispatch(rid, {alice.address: 500})
        assert ven.next_award(kind="dispatch").watts == 500
        wait_for(lambda: opts == [OPT_IN], what="the opt-in after the restart")
    finally:
        ven.stop()
        vtn.stop()
    # a VEN that restarts too gets its old ven_id back
    vtn = _vtn(dr, tmp_path, port)
    again = _ven(vtn, keys[1])
    try:
        assert again.ven_id == ven_id
    finally:
        again.stop()
        vtn.stop()


def test_registration_is_refused_for_unenrolled_forged_or_stale_names(anvil, w3, dr, utility, keys, tmp_path):
    vtn = _vtn(dr, tmp_path, devchain.free_port())
    try:
        with pytest.raises(OpenAdrError, match="refused"):
            _ven(vtn, keys[3])  # a valid proof, but not enrolled on the contract
        _enrol(dr, utility, keys[3:4])
        ven = _ven(vtn, keys[3])
        ven.stop()

        from openleadr import OpenADRClient  # hostile VENs speak raw OpenLEADR

        victim = Web3.to_checksum_address(Signer.from_key(w3, keys[3]).address)
        forged = ven_name_for(vtn.vtn_id, keys[4]).split(":")  # signed by someone else
        stale = ven_name_for(vtn.vtn_id, keys[3], timestamp=1_000_000_000)
        other_vtn = ven_name_for("SomeOtherVTN", keys[3])
        for name in (f"{victim}:{forged[1]}:{forged[2]}", stale, other_vtn, "not-a-name", victim):
            client = OpenADRClient(ven_name=name, vtn_url=vtn.url, show_fingerprint=False)
            try:
                vtn._loop.call(client.create_party_registration)  # noqa: SLF001 - the VTN's own loop
                assert client.registration_id is None, name
            finally:
                vtn._loop.call(client.stop)
        assert len(vtn.registered()) == 1
    finally:
        vtn.stop()


def test_a_ven_ignores_events_outside_its_programme(anvil, w3, dr, utility, keys, tmp_path):
    (alice,) = _enrol(dr, utility, keys[1:2])
    opts: list[str] = []
    vtn = _vtn(dr, tmp_path, devchain.free_port(), on_opt=lambda event, opt: opts.append(opt))
    elsewhere = MarketContext(w3.eth.chain_id, "0x" + "11" * 20)
    ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[1], programme=elsewhere).start()
    try:
        rid = _request(anvil, w3, dr, utility, target=500)
        vtn.dispatch(rid, {alice.address: 500})
        wait_for(lambda: opts, what="the VEN's answer")
        assert opts == [OPT_OUT]
        with pytest.raises(queue.Empty):
            ven.next_award(timeout=0.2)
    finally:
        ven.stop()
        vtn.stop()


def test_a_busy_port_and_an_unreachable_vtn_are_one_line_errors(anvil, w3, dr, utility, keys, tmp_path):
    assert not DEFAULT_VTN_ID.islower()  # OpenADR refuses an all-lower-case VTN id
    port = devchain.free_port()
    vtn = _vtn(dr, tmp_path, port)
    try:
        with pytest.raises(OpenAdrError, match=f"cannot listen on 127.0.0.1:{port}"):
            UtilityVtn(dr, tmp_path / "other.sqlite", port=port).start()
    finally:
        vtn.stop()
    with pytest.raises(OpenAdrError, match="unreachable or it refused"):
        ConsumerVen(vtn.url, vtn.vtn_id, keys[1]).start()


def test_telemetry_resumes_after_a_vtn_restart_while_the_ven_keeps_running(anvil, w3, dr, utility, keys, tmp_path):
    """OpenLEADR keeps report requests in memory: the restarted VTN refuses the VEN's next report
    (a request it never made), asks it at its next poll to register again, and the VEN does so with
    a fresh registration proof and registers its reports anew."""
    (alice,) = _enrol(dr, utility, keys[1:2])
    port = devchain.free_port()
    before: list[Telemetry] = []
    vtn = _vtn(dr, tmp_path, port, on_telemetry=before.append)
    ven = _ven(vtn, keys[1], read_power=lambda: 700.0)
    after: list[Telemetry] = []
    try:
        wait_for(lambda: before, what="telemetry before the restart")
        vtn.stop()
        vtn = _vtn(dr, tmp_path, port, on_telemetry=after.append)
        wait_for(lambda: len(after) >= 2, timeout=20, what="telemetry after the restart")
        assert [v.ven_id for v in vtn.registered()] == [ven.ven_id]  # the same VEN, registered again
    finally:
        ven.stop()
        vtn.stop()
    assert {(t.address, t.watts) for t in after} == {(alice.address, 700.0)}
