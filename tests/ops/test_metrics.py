"""Prometheus metrics: scraped over real HTTP and parsed with prometheus_client's parser.

The recorders feed one process-wide registry, so each test compares a scrape after with a
scrape before. A real anvil gives real receipts (gas by contract function) and real RPC
failures (a JSON-RPC error answer; a killed node, which web3 retries before giving up).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon_helpers import ROOT
from web3 import Web3

from demand_response import devchain, metrics
from demand_response.artifacts import load_artifact
from demand_response.chain import connect
from demand_response.config import ConfigError, Settings

#: Every metric issue 19 asks for, under its exposition name and type.
EXPECTED = {
    "dr_requests_heard": "counter", "dr_bids_sent": "counter", "dr_bids_mined": "counter",
    "dr_reaction_seconds": "histogram", "dr_rpc_errors": "counter", "dr_rpc_retries": "counter",
    "dr_gas_used": "counter", "dr_fees_paid_wei": "counter", "dr_owed_wei": "gauge",
    "dr_listener_lag_blocks": "gauge", "dr_heartbeat_timestamp_seconds": "gauge", "dr_push_connected": "gauge",
    # the utility's bid relay (issue 15, docs/production.md)
    "dr_relayed_entries": "counter", "dr_relay_gas_used": "counter",
}


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@pytest.fixture(scope="module")
def server() -> Iterator[metrics.MetricsServer]:
    running = metrics.serve(0)
    yield running
    running.close()


def _scrape(server: metrics.MetricsServer) -> dict[tuple[str, tuple], float]:
    status, content_type, body = _get(server.url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    node = devchain.start("anvil", accounts=3, chain_id=31337,
                          log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    yield node
    node.stop()


def test_every_metric_is_exposed_with_conventional_names_and_types(server: metrics.MetricsServer) -> None:
    status, _, body = _get(server.url + "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body) if not f.name.endswith("_created")}
    # The web app's own families (dr_web_*) join the registry once flaskapp is imported in this
    # process (tests/web shares the worker); they are checked in tests/ops/test_server.py.
    assert {name: f.type for name, f in families.items() if not name.startswith("dr_web_")} == EXPECTED
    for name, family in families.items():
        assert name.startswith("dr_") and family.documentation, name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name


def test_recorded_values_show_in_a_scrape(server: metrics.MetricsServer) -> None:
    before = _scrape(server)
    metrics.request_heard()
    metrics.bids_sent(3)
    metrics.bids_mined(2)
    metrics.bids_sent(0)  # nothing sent: no change
    metrics.observe_reaction(0.7)
    metrics.observe_reaction(12.0)
    metrics.request_heard(7, "0xAbC")  # heard by one agent, then its bid mined: one reaction
    metrics.bids_mined(1, 7, "0xabc")
    metrics.reacted(7, "0xabc")  # only the first transaction on a request counts
    metrics.reacted(8, "0xabc")  # never heard (e.g. after a restart): nothing
    metrics.set_owed("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 25 * 10**15)
    metrics.set_lag("consumer home", 3)
    metrics.rpc_retry("unreachable")
    after = _scrape(server)
    assert _delta(before, after, "dr_requests_heard_total") == 2
    assert _delta(before, after, "dr_bids_sent_total") == 3
    assert _delta(before, after, "dr_bids_mined_total") == 3
    assert _delta(before, after, "dr_reaction_seconds_count") == 3
    assert 12.7 <= _delta(before, after, "dr_reaction_seconds_sum") < 12.7 + 60
    assert _delta(before, after, "dr_reaction_seconds_bucket", le="30.0") == 3
    assert after[("dr_owed_wei", (("account", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),))] == 25e15
    assert after[("dr_listener_lag_blocks", (("daemon", "consumer home"),))] == 3
    assert _delta(before, after, "dr_rpc_retries_total", kind="unreachable") == 1


def test_gas_and_fees_are_counted_by_contract_function_from_real_receipts(
        server: metrics.MetricsServer, anvil: devchain.DevChain) -> None:
    # Sent with plain web3 (not Signer, which records its own transactions once hooked up).
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    me, other = w3.eth.accounts[:2]

    def mined(tx: dict) -> dict:
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))
        metrics.transaction_mined(tx, receipt)
        return receipt

    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    before = _scrape(server)
    deployed = mined(factory.constructor(True).build_transaction({"from": me}))
    dr = w3.eth.contract(address=deployed["contractAddress"], abi=artifact["abi"])
    enrol = mined(dr.functions.enrol(other).build_transaction({"from": me}))
    mined({"from": me, "to": other, "value": 1})
    after = _scrape(server)
    assert _delta(before, after, "dr_gas_used_total", action="deploy") == deployed["gasUsed"] > 1_000_000
    assert _delta(before, after, "dr_gas_used_total", action="enrol") == enrol["gasUsed"]
    assert _delta(before, after, "dr_gas_used_total", action="transfer") == 21_000
    assert _delta(before, after, "dr_fees_paid_wei_total", action="enrol") == pytest.approx(
        enrol["gasUsed"] * enrol["effectiveGasPrice"])


def test_rpc_errors_and_web3_transport_retries_are_counted_by_kind(
        server: metrics.MetricsServer, tmp_path) -> None:
    node = devchain.start("anvil", accounts=1, log_path=tmp_path / "anvil.log")
    try:
        w3 = metrics.instrument(connect(node.url))
        assert metrics.instrument(w3) is w3  # idempotent: wrapped once
        # Wrapped before its first call, with web3's request cache (which calls make_request
        # again inside the wrapper), as chain.connect builds it.
        fresh = metrics.instrument(Web3(Web3.HTTPProvider(node.url, cache_allowed_requests=True,
                                                          cacheable_requests={"eth_chainId"})))
        assert fresh.eth.chain_id == fresh.eth.chain_id == node.chain_id
        before = _scrape(server)
        assert w3.eth.block_number == 0
        reply = w3.provider.make_request("eth_noSuchMethod", [])
        assert "error" in reply
        middle = _scrape(server)
        assert _delta(before, middle, "dr_rpc_errors_total", kind="rpc") == 1
        assert _delta(before, middle, "dr_rpc_retries_total", kind="transport") == 0
    finally:
        node.stop()
    with pytest.raises(Exception):
        w3.eth.get_balance("0x" + "11" * 20)
    after = _scrape(server)
    assert _delta(middle, after, "dr_rpc_errors_total", kind="connection") == 1
    assert _delta(middle, after, "dr_rpc_retries_total", kind="transport") == 3  # web3 tries 4 times


def test_metrics_endpoint_refuses_other_methods_paths_and_missing_tokens() -> None:
    running = metrics.serve(0, token="t0ken-for-prometheus")
    try:
        assert _get(running.url + "/metrics")[0] == 401
        assert _get(running.url + "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        status, _, body = _get(running.url + "/metrics", {"Authorization": "Bearer t0ken-for-prometheus"})
        assert status == 200 and "dr_bids_sent_total" in body
        assert _get(running.url + "/nope")[0] == 404
        assert _get(running.url + "/healthz")[0] == 404  # no health check given to this server
        post = urllib.request.Request(running.url + "/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(post, timeout=5)
        assert info.value.code == 405
    finally:
        running.close()


def test_a_busy_or_invalid_metrics_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}.*METRICS_PORT"):
            metrics.serve(port)
    for bad in ("http", "70000", "-1"):
        with pytest.raises(ConfigError, match="METRICS_PORT must be a port number"):
            metrics.serve_from_settings(Settings(values={"METRICS_PORT": bad}))
    assert metrics.serve_from_settings(Settings(values={})) is None


def test_served_from_settings_on_loopback_by_default() -> None:
    port = devchain.free_port()
    running = metrics.serve_from_settings(Settings(values={"METRICS_PORT": str(port)}))
    try:
        assert running is not None and running.host == "127.0.0.1" and running.port == port
        assert _get(running.url + "/metrics")[0] == 200
    finally:
        running.close()


# Without prometheus-client (a consumer board's light install), everything imports and the
# recorders do nothing; /healthz still answers and /metrics says what to install.
_LIGHT = r"""
import json, sys, urllib.error, urllib.request
sys.modules["prometheus_client"] = None  # as if not installed: importing it raises ImportError
from demand_response import consumer, listener, utility, metrics, health, logs
assert not metrics.available() and metrics.registry() is None
metrics.request_heard(); metrics.bids_sent(2); metrics.bids_mined(1); metrics.observe_reaction(1.0)
metrics.rpc_error("connection"); metrics.rpc_retry("transport"); metrics.set_owed("0xabc", 5)
metrics.set_lag("d", 1); metrics.transaction_mined({"to": None}, {"gasUsed": 1})
health.beat("consumer", 10, 9)
class _W3: provider = object()
assert metrics.instrument(_W3) is _W3
server = metrics.serve(0, health=lambda: (200, {"status": "ok"}))
try:
    urllib.request.urlopen(server.url + "/metrics")
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode().strip())
print(json.loads(urllib.request.urlopen(server.url + "/healthz").read())["status"])
server.close()
print("prometheus_client" in sys.modules and sys.modules["prometheus_client"] is None)
"""


def test_without_prometheus_client_the_daemons_import_and_metrics_are_no_ops() -> None:
    done = subprocess.run([sys.executable, "-c", _LIGHT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"503 {metrics.MISSING}", "ok", "True"]
