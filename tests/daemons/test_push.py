"""Push over a WebSocket (``eth_subscribe``): a consumer daemon on a ``ws://`` node reacts in
the block after a request even with a 30 s poll interval, and survives the node dropping
the socket (a loopback TCP proxy that is cut), catching up on a request made meanwhile.

The utility daemon (the same listener) survives the cut socket too and settles the request.

Real anvil mining a block every 2 s, real ``dr consumer run``/``dr utility run`` subprocesses, real
sockets.
Block numbers are asserted, never times.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from web3 import Web3

from daemon_helpers import Daemon, TcpProxy, dr_env, wait_until
from demand_response import devchain
from demand_response.bids import save_bids
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import DemandReduction
from demand_response.listener import event_topics
from demand_response.utility import deploy, plan_request, send_request

pytestmark = pytest.mark.slow

CAP = 128 * 10**14
BLOCK_S = 2
#: Polling alone would need up to this many seconds (15 blocks): a bid in the next block was pushed.
SLOW_POLL = "30"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    chain = devchain.start("anvil", accounts=6, block_time=BLOCK_S,
                           log_path=tmp_path_factory.mktemp("node") / "anvil.log")
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def w3(node: devchain.DevChain) -> Web3:
    return connect(node.url)


def _deploy(w3: Web3, node: devchain.DevChain, folder: Path) -> DemandReduction:
    settings = load_settings(folder / ".env", environ={}, rpc_url=node.url, deployments_file=folder / "deployments.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), node.chain_id)


def _request(w3: Web3, dr: DemandReduction) -> tuple[int, int]:
    """(request id, block it was mined in)."""
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=4.0, now=now, bidding_window_s=60, event_duration_s=3600,
                        max_price_wei_per_kwh=CAP)
    rid, receipt = send_request(dr, Signer(w3, w3.eth.accounts[0]), plan)
    return rid, int(receipt["blockNumber"])


def _bid_block(w3: Web3, dr: DemandReduction, rid: int, bidder: str) -> int | None:
    """The block of ``bidder``'s first bid on ``rid`` (None: no bid yet)."""
    (topic,) = event_topics("BidsSubmitted")
    for raw in w3.eth.get_logs({"address": dr.address, "fromBlock": 0, "toBlock": "latest", "topics": [topic]}):
        event = dr.contract.events.BidsSubmitted().process_log(raw)
        if int(event["args"]["requestId"]) == rid and event["args"]["bidder"] == bidder:
            return int(raw["blockNumber"])
    return None


def _consumer(tmp: Path, url: str, dr: DemandReduction, index: int, start: int, name: str,
              metrics_port: int) -> Daemon:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    save_bids(tmp / f"{name}-bids.json", [(1000, 10 * 10**14)])
    return Daemon(
        ["consumer", "run", "--rpc-url", url, "--contract", dr.address, "--account-index", str(index),
         "--bids-file", str(tmp / f"{name}-bids.json"), "--results-file", str(tmp / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", name],
        tmp, folder / "consumer.log", env=dr_env(POLL_INTERVAL=SLOW_POLL, METRICS_PORT=str(metrics_port)),
    )


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _health(port: int) -> dict:
    import json

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # 503 while the node is away: still the report
        return json.loads(exc.read())


def _events(port: int, daemon: str) -> str:
    return _health(port)["checks"]["daemons"]["daemons"][daemon].get("events", "")


def _value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape_once_mined(port: int, mined: float) -> dict:
    """A scrape once the daemon has counted ``mined`` bids (its receipt can follow the log)."""
    def ready() -> dict | None:
        scrape = _scrape(port)
        return scrape if _value(scrape, "dr_bids_mined_total") >= mined else None
    return wait_until(ready, timeout=30, what="the mined bid in the metrics")


def test_a_consumer_on_a_websocket_node_bids_in_the_block_after_the_request(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr = _deploy(w3, node, tmp_path)
    port = devchain.free_port()
    consumer = _consumer(tmp_path, f"ws://127.0.0.1:{node.port}", dr, 1, w3.eth.block_number, "c", port)
    try:
        consumer.wait_for("subscribed to new heads")
        consumer.wait_for("listening for requests")
        rid, requested_in = _request(w3, dr)
        bid_in = wait_until(lambda: _bid_block(w3, dr, rid, w3.eth.accounts[1]), timeout=40, what="the bid")
        scrape = _scrape_once_mined(port, 1)
    finally:
        code = consumer.stop()
    assert code == 0 and "Traceback" not in consumer.output()
    assert bid_in <= requested_in + 1, f"request in block {requested_in}, bid in block {bid_in}"
    assert _value(scrape, "dr_push_connected", daemon="c") == 1
    assert _value(scrape, "dr_bids_mined_total") == 1 and _value(scrape, "dr_reaction_seconds_count") == 1


def test_a_consumer_survives_the_node_dropping_its_socket_and_catches_up(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr = _deploy(w3, node, tmp_path)
    proxy = TcpProxy(node.port)
    proxy.up()
    port = devchain.free_port()
    consumer = _consumer(tmp_path, f"ws://127.0.0.1:{proxy.port}", dr, 2, w3.eth.block_number, "d", port)
    try:
        consumer.wait_for("subscribed to new heads")
        consumer.wait_for("listening for requests")
        wait_until(lambda: _events(port, "d") == "push", timeout=20, what="health: push")
        before = _scrape(port)
        proxy.down()
        consumer.wait_for("push socket", timeout=20)  # "... dropped ...; polling until it is back"
        rid, requested_in = _request(w3, dr)  # posted while the daemon cannot see the chain
        seen = w3.eth.block_number
        wait_until(lambda: w3.eth.block_number >= seen + 2, timeout=20, what="two more blocks")
        assert _bid_block(w3, dr, rid, w3.eth.accounts[2]) is None
        proxy.up()
        back = time.monotonic()
        consumer.wait_for("is back after", timeout=60)
        bid_in = wait_until(lambda: _bid_block(w3, dr, rid, w3.eth.accounts[2]), timeout=60, what="the bid")
        reconnect_s = time.monotonic() - back
        after = _scrape_once_mined(port, _value(before, "dr_bids_mined_total") + 1)
        wait_until(lambda: _events(port, "d") == "push", timeout=20, what="health: push again")
    finally:
        code = consumer.stop()
        proxy.down()
    out = consumer.output()
    assert code == 0 and "Traceback" not in out
    assert bid_in > requested_in + 2  # made while down, caught up from the cursor afterwards
    assert len(dr.bids_of(rid, w3.eth.accounts[2])) == 1
    assert "catching up from the cursor" in out
    print(f"request in block {requested_in}, bid in block {bid_in}; caught up {reconnect_s:.1f} s after the "
          f"proxy came back; {re.findall(r'is back after [0-9.]+ s', out)}")
    assert _value(after, "dr_rpc_errors_total", kind="connection") > _value(before, "dr_rpc_errors_total",
                                                                            kind="connection")
    assert _value(after, "dr_rpc_retries_total", kind="push") > _value(before, "dr_rpc_retries_total", kind="push")
    assert _value(after, "dr_requests_heard_total") == _value(before, "dr_requests_heard_total") + 1
    assert _value(after, "dr_bids_mined_total") == _value(before, "dr_bids_mined_total") + 1
    assert _value(after, "dr_push_connected", daemon="d") == 1


def test_the_utility_daemon_survives_a_cut_socket_and_settles_a_request_made_meanwhile(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    from demand_response.contract import Status

    dr = _deploy(w3, node, tmp_path)
    start = w3.eth.block_number
    proxy = TcpProxy(node.port)
    proxy.up()
    (tmp_path / "utility").mkdir()
    utility = Daemon(["utility", "run", "--rpc-url", f"ws://127.0.0.1:{proxy.port}", "--contract", dr.address,
                      "--state-dir", str(tmp_path / "utility"), "--poll-interval", SLOW_POLL,
                      "--deployments-file", str(tmp_path / "deployments.json")],
                     tmp_path, tmp_path / "utility" / "utility.log", env=dr_env(START_BLOCK=str(start)))
    try:
        utility.wait_for("subscribed to new heads")
        proxy.down()
        utility.wait_for("push socket", timeout=20)
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        rid, _ = send_request(dr, Signer(w3, w3.eth.accounts[0]), plan_request(
            target_kw=4.0, now=now, bidding_window_s=4, event_duration_s=3600, max_price_wei_per_kwh=CAP))
        assert dr.get_request(rid).status == Status.OPEN
        proxy.up()
        utility.wait_for(f"watching request {rid}", timeout=60)
        wait_until(lambda: dr.get_request(rid).status != Status.OPEN, timeout=60, what="the request settled")
    finally:
        code = utility.stop()
        proxy.down()
    assert code == 0 and "Traceback" not in utility.output()
    assert "catching up from the cursor" in utility.output()
    assert dr.get_request(rid).status == Status.SETTLED
