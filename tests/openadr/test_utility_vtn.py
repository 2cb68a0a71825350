"""``dr utility run --vtn-port``: the utility daemon drives a real OpenLEADR VTN, and a real VEN
on loopback hears each phase (notice, dispatch, cancellation); its telemetry reaches the meter
store through ``IntervalFeed``; the daemon stops the VTN when it stops."""

from __future__ import annotations

import threading
import time

from demand_response import devchain
from demand_response.chain import Signer
from demand_response.contract import Status
from demand_response.mv import MeterStore
from demand_response.openadr.ven import ConsumerVen
from demand_response.utility import UtilityDaemon, start_vtn

from openadr_helpers import CAP, POLL_S, REPORT_S, wait_for


def test_the_daemon_announces_dispatches_and_cancels_through_its_vtn_and_stores_telemetry(
        anvil, w3, dr, utility, keys, tmp_path):
    alice = Signer.from_key(w3, keys[1])
    dr.enrol(utility, alice.address)
    db = tmp_path / "meters.sqlite"
    vtn = start_vtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), meter_db=db,
                    poll_interval=POLL_S, report_interval=REPORT_S)
    ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[1], programme=vtn.programme(), sampling_interval=REPORT_S,
                      read_power=lambda: 1200.0).start()
    daemon = UtilityDaemon(dr, utility, state_path=tmp_path / "cursor.json", start_block=w3.eth.block_number,
                           chain_id=anvil.chain_id, poll_interval=0.1, auto_withdraw=False, vtn=vtn)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: vtn.registered(), what="the VEN's registration")
        anvil.rpc("evm_mine", [])
        now = max(w3.eth.get_block("latest")["timestamp"], int(time.time()))
        rid, _ = dr.request_reduction(utility, 2000, now + 60, now + 60 + 3600, now + 20, CAP, 0, None)
        notice = ven.next_award(kind="notice")
        assert (notice.request_id, notice.watts) == (rid, 2000)

        dr.submit_bids(alice, rid, [1500], [10**12])
        anvil.rpc("evm_increaseTime", [21])
        anvil.rpc("evm_mine", [])
        award = ven.next_award(kind="dispatch", timeout=20)  # the daemon selected winners, then dispatched
        assert (award.request_id, award.watts) == (rid, 1500)
        assert dr.get_request(rid).status == Status.SETTLED

        now = w3.eth.get_block("latest")["timestamp"]
        other, _ = dr.request_reduction(utility, 1000, now + 600, now + 4200, now + 300, CAP, 0, None)
        assert ven.next_award(kind="notice").request_id == other
        dr.cancel_request(utility, other)
        cancelled = ven.next_award(kind="notice", timeout=20)
        assert cancelled.cancelled and cancelled.request_id == other
        wait_for(lambda: f"{alice.address}@meter" in vtn.on_telemetry._open, timeout=20, what="telemetry from the VEN")
    finally:
        stop.set()
        runner.join(30)
        ven.stop()
    assert not runner.is_alive()
    assert vtn._loop is None  # the daemon stopped the VTN
    with MeterStore.open(db) as store:  # the open interval was flushed into the store at stop
        rows = store.readings(f"{alice.address}@meter")  # the VEN's own series, never the address's meter
        assert store.span(alice.address) is None
    assert rows and rows[-1].seconds == 900 and rows[-1].wh == 300  # 1.2 kW for 15 min


def test_dr_utility_run_with_a_vtn_port_serves_vens_and_stops_cleanly(anvil, w3, dr, utility, keys, tmp_path):
    from daemon_helpers import Daemon, dr_env

    alice = Signer.from_key(w3, keys[1])
    dr.enrol(utility, alice.address)
    port = devchain.free_port()
    daemon = Daemon(["utility", "run", "--rpc-url", anvil.url, "--contract", dr.address, "--state-dir", str(tmp_path),
                     "--vtn-port", str(port), "--deployments-file", str(tmp_path / "d.json")],
                    tmp_path, tmp_path / "utility.log", env=dr_env(START_BLOCK=str(w3.eth.block_number),
                                                                   VTN_ID="TestVTN"))
    try:
        daemon.wait_for("VTN TestVTN listening")
        ven = ConsumerVen(f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b", "TestVTN", keys[1]).start()
        try:
            anvil.rpc("evm_mine", [])
            now = max(w3.eth.get_block("latest")["timestamp"], int(time.time()))
            dr.request_reduction(utility, 1000, now + 600, now + 4200, now + 300, CAP, 0, None)
            daemon.wait_for("OpenADR notice sent to 1 VEN(s)")  # the VEN hears it at its next poll (10 s)
        finally:
            ven.stop()
    finally:
        assert daemon.stop() == 0
    assert "Responding to" not in daemon.output()  # openleadr's message dumps stay out of the log
    assert list(tmp_path.glob("vtn-*.sqlite"))
