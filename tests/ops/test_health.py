"""Health: node, contract and daemons against a real anvil, and over real HTTP.

Up and well; the wrong chain id; no code at the address; the node killed; a head that stopped
advancing (a test clock, no sleeping); a daemon that never beat, stopped beating or trails
the head; the ``HEALTH_*`` settings.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from demand_response import devchain, health, metrics
from demand_response.chain import Signer, connect
from demand_response.config import ConfigError, Settings
from demand_response.contract import DemandReduction



@pytest.fixture(autouse=True)
def _no_heartbeats_from_earlier_tests() -> None:
    """Heartbeats are per process: an xdist worker may have run daemons in-process before."""
    for name in list(health._beats_now()):
        health.forget(name)

@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    node = devchain.start("anvil", accounts=2, chain_id=31337,
                          log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def address(anvil: devchain.DevChain) -> str:
    w3 = connect(anvil.url)
    return DemandReduction.deploy(Signer(w3, w3.eth.accounts[0])).address


@pytest.fixture(autouse=True)
def _no_beats() -> Iterator[None]:
    yield
    for name in ("utility", "consumer home", "fleet"):
        health.forget(name)


def test_node_contract_and_beating_daemon_are_well(anvil: devchain.DevChain, address: str) -> None:
    health.beat("utility", head_block=20, scanned_block=20)
    status, report = health.HealthCheck(anvil.url, chain_id=31337, address=address, daemons=["utility"])()
    assert status == 200 and report["status"] == "ok", report
    checks = report["checks"]
    assert checks["node"]["ok"] and checks["node"]["chain_id"] == 31337
    assert checks["contract"]["ok"] and "contract code at" in checks["contract"]["detail"]
    assert checks["daemons"]["daemons"]["utility"]["lag_blocks"] == 0
    json.dumps(report)  # JSON as it is


def test_wrong_chain_id_fails_and_names_the_fix(anvil: devchain.DevChain, address: str) -> None:
    status, report = health.HealthCheck(anvil.url, chain_id=1, address=address)()
    assert status == 503 and report["status"] == "fail"
    assert report["checks"]["node"]["detail"].endswith("is on chain 31337, not 1; fix RPC_URL or CHAIN_ID")
    assert not report["checks"]["contract"]["ok"]  # not checked on a chain that is not ours


def test_no_code_at_the_address_fails(anvil: devchain.DevChain) -> None:
    empty = "0x" + "42" * 20
    status, report = health.HealthCheck(anvil.url, chain_id=31337, address=empty)()
    assert status == 503 and report["checks"]["node"]["ok"]
    assert report["checks"]["contract"]["detail"].startswith(f"no contract code at {empty}")
    status, report = health.HealthCheck(anvil.url, address="not-an-address")()
    assert status == 503 and "fix CONTRACT_ADDRESS" in report["checks"]["contract"]["detail"]
    status, report = health.HealthCheck(anvil.url, address=None)()
    assert status == 503 and "set CONTRACT_ADDRESS" in report["checks"]["contract"]["detail"]


def test_a_killed_node_fails_and_recovers_when_it_is_back(tmp_path) -> None:
    node = devchain.start("anvil", accounts=1, chain_id=31337, log_path=tmp_path / "a.log")
    w3 = connect(node.url)
    address = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0])).address
    check = health.HealthCheck(node.url, chain_id=31337, address=address)
    assert check()[0] == 200
    node.stop()
    status, report = check()
    assert status == 503
    assert report["checks"]["node"]["detail"] == (f"the node at {node.url} is not answering; "
                                                  "check RPC_URL and that the node is running")
    assert report["checks"]["contract"]["detail"] == "not checked: the node is not well"
    again = devchain.start("anvil", port=node.port, accounts=1, chain_id=31337, log_path=tmp_path / "b.log")
    try:
        DemandReduction.deploy(Signer(connect(again.url), w3.eth.accounts[0]))  # same deployer, same address
        assert check()[0] == 200
    finally:
        again.stop()


def test_a_head_that_stops_advancing_fails_after_the_limit(anvil: devchain.DevChain, address: str) -> None:
    now = [1000.0]
    check = health.HealthCheck(anvil.url, address=address, head_max_age=30, clock=lambda: now[0])
    assert check()[0] == 200
    now[0] += 31
    status, report = check()
    assert status == 503 and "the head has stayed at block" in report["checks"]["node"]["detail"]
    anvil.rpc("evm_mine", [])
    assert check()[0] == 200  # a new block: advancing again
    # On a dev chain id the head is not watched by default: anvil mines only on demand.
    idle = health.HealthCheck(anvil.url, address=address, clock=lambda: now[0])
    idle()
    now[0] += 10_000
    assert idle()[0] == 200


def test_daemons_that_never_beat_stopped_beating_or_trail_fail(anvil: devchain.DevChain, address: str) -> None:
    check = health.HealthCheck(anvil.url, address=address, daemons=["utility"], heartbeat_max_age=0.0001,
                               max_lag_blocks=5)
    status, report = check()
    assert status == 503 and report["checks"]["daemons"]["daemons"]["utility"]["detail"].startswith("no heartbeat yet")
    health.beat("utility", 100, 99)
    status, report = check()
    assert status == 503 and "no heartbeat for" in report["checks"]["daemons"]["daemons"]["utility"]["detail"]
    check.heartbeat_max_age = 60
    health.beat("utility", 100, 90)
    status, report = check()
    assert status == 503
    assert report["checks"]["daemons"]["detail"] == "0 of 1 well; not well: utility"
    assert "10 blocks behind the head (limit 5)" in report["checks"]["daemons"]["daemons"]["utility"]["detail"]
    health.beat("utility", 101, 100)
    assert check()[0] == 200
    # Without a list: whichever daemons beat in this process (the web app's in-process daemon).
    anyone = health.HealthCheck(anvil.url, address=address)
    assert anyone()[1]["checks"]["daemons"]["daemons"].keys() == {"utility"}
    health.forget("utility")
    assert anyone()[1]["checks"]["daemons"]["detail"] == "no daemon runs in this process"


def test_health_settings_are_read_and_bad_ones_are_one_line() -> None:
    settings = Settings(rpc_url="http://127.0.0.1:9", expected_chain_id=5, contract_address="0x" + "1" * 40,
                        values={"HEALTH_HEAD_MAX_AGE": "40", "HEALTH_HEARTBEAT_MAX_AGE": "90",
                                "HEALTH_MAX_LAG_BLOCKS": "7"})
    check = health.HealthCheck.from_settings(settings, daemons=["utility"])
    assert (check.chain_id, check.head_max_age, check.heartbeat_max_age, check.max_lag_blocks) == (5, 40, 90, 7)
    for key, bad in (("HEALTH_HEAD_MAX_AGE", "soon"), ("HEALTH_MAX_LAG_BLOCKS", "-3")):
        with pytest.raises(ConfigError, match=key):
            health.HealthCheck.from_settings(Settings(values={key: bad}))


def test_healthz_served_over_http_answers_200_then_503(anvil: devchain.DevChain, address: str) -> None:
    check = health.HealthCheck(anvil.url, chain_id=31337, address=address)
    server = metrics.serve(0, health=check)
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as reply:
            assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
            assert json.loads(reply.read())["status"] == "ok"
        check.address = "0x" + "42" * 20
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "/healthz", timeout=10)
        assert info.value.code == 503 and json.loads(info.value.read())["status"] == "fail"
    finally:
        server.close()
