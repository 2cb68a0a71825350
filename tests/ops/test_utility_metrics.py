"""``dr utility run`` with METRICS_PORT serves /metrics and /healthz while it settles (docs/production.md):
the counters of what this process did move (requests heard, gas and fees of its selectWinners,
its listener's heartbeat and lag), and the log lines follow LOG_FORMAT."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon_helpers import Daemon, dr_env, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, Status
from demand_response.utility import plan_request, send_request

CAP = 128 * 10**14


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    node = devchain.start("anvil", accounts=3, balance_eth=1_000,
                          log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    yield node
    node.stop()


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        body = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def test_the_utility_daemon_serves_metrics_that_move_as_it_settles(anvil, tmp_path: Path) -> None:
    w3 = connect(anvil.url)
    utility = Signer(w3, w3.eth.accounts[0])
    dr = DemandReduction.deploy(utility)
    port = devchain.free_port()
    daemon = Daemon(["utility", "run", "--rpc-url", anvil.url, "--contract", dr.address, "--state-dir",
                     str(tmp_path), "--poll-interval", "0.2", "--deployments-file", str(tmp_path / "d.json")],
                    tmp_path, tmp_path / "utility.log",
                    env=dr_env(START_BLOCK=str(w3.eth.block_number), METRICS_PORT=str(port), LOG_FORMAT="json"))
    try:
        daemon.wait_for('"utility: watching')
        before = _scrape(port)
        assert before[("dr_requests_heard_total", ())] == 0
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        plan = plan_request(target_kw=1.0, now=now, bidding_window_s=3, event_duration_s=3600,
                            max_price_wei_per_kwh=CAP)
        rid, _ = send_request(dr, utility, plan)
        dr.submit_bids(Signer(w3, w3.eth.accounts[1]), rid, [1000], [CAP // 2])
        daemon.wait_for("winners selected", timeout=40)
        assert dr.get_request(rid).status == Status.SETTLED
        after = wait_until(lambda: (s := _scrape(port))[("dr_heartbeat_timestamp_seconds", (("daemon", "utility"),))]
                           and s, what="a heartbeat")
        assert after[("dr_requests_heard_total", ())] == 1
        assert after[("dr_gas_used_total", (("action", "selectWinners"),))] > 0
        assert after[("dr_fees_paid_wei_total", (("action", "selectWinners"),))] > 0
        assert after[("dr_listener_lag_blocks", (("daemon", "utility"),))] >= 0
        daemon.wait_for("withdrew refund")  # the unspent budget comes back, and the gauge says so
        owed = _scrape(port)[("dr_owed_wei", (("account", utility.address),))]
        assert owed == 0 and dr.owed(utility.address) == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            health = json.loads(reply.read())
        assert reply.status == 200 and health["status"] == "ok"
    finally:
        assert daemon.stop() == 0
    out = daemon.output().splitlines()
    logged = [line for line in out if not line.startswith("request ")]  # the exit summary is printed, not logged
    assert logged and all(json.loads(line)["message"] for line in logged)  # LOG_FORMAT=json: JSON lines only
