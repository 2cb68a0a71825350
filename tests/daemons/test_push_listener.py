"""The listener's push path in-process, on real nodes and sockets (the utility daemon and the
consumer share ``LogPoller.run``):

* ``ws://`` JSON-RPC (``chain.wsrpc``) reads, sends and batches on ganache and anvil;
* the utility's listener hears a request in the block after it was mined with a 30 s poll
  interval, because the new head was pushed;
* a node with no WebSocket next to its HTTP port leaves the listener polling, with one line.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from web3 import Web3

from daemon_helpers import TcpProxy, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.errors import ConnectionProblem
from demand_response.listener import Event, LogPoller, StateFile
from demand_response.utility import deploy, plan_request, send_request
from fault_helpers import FlakyRpcProxy

pytestmark = pytest.mark.slow  # about 20 s: three chains of its own

CAP = 128 * 10**14


@pytest.mark.parametrize("kind", ["ganache", "anvil"])
def test_ws_json_rpc_reads_sends_and_batches(tmp_path: Path, kind: str) -> None:
    with devchain.start(kind, accounts=2, log_path=tmp_path / f"{kind}.log") as node:
        w3 = connect(f"ws://127.0.0.1:{node.port}")
        a, b = w3.eth.accounts[:2]
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": a, "to": b, "value": 5}))
        assert receipt["status"] == 1 and w3.eth.block_number == receipt["blockNumber"]
        numbers, chain_ids = w3.provider.make_batch_request([("eth_blockNumber", []), ("eth_chainId", [])])
        assert int(numbers["result"], 16) == receipt["blockNumber"] and int(chain_ids["result"], 16) == node.chain_id
        assert w3.provider.dr_push == (f"ws://127.0.0.1:{node.port}", False)  # the feed uses the same URL


def test_a_read_on_a_socket_the_node_closed_is_asked_again_and_a_send_is_not(tmp_path: Path) -> None:
    with devchain.start("anvil", accounts=2, log_path=tmp_path / "anvil.log") as node:
        proxy = TcpProxy(node.port)
        proxy.up()
        try:
            w3 = connect(f"ws://127.0.0.1:{proxy.port}")
            before = w3.eth.block_number
            proxy.down()  # the idle socket is cut; the node is back at once
            proxy.up()
            assert w3.eth.block_number == before  # a read: asked again on a new socket
            a, b = w3.eth.accounts[:2]
            proxy.down()
            proxy.up()
            with pytest.raises(ConnectionError):  # a send: might have gone out, so never repeated
                w3.provider.make_request("eth_sendTransaction", [{"from": a, "to": b, "value": "0x1"}])
            assert w3.eth.get_transaction_count(a) == 0 and w3.eth.block_number == before
        finally:
            proxy.down()


def test_an_unreachable_ws_url_is_one_line_naming_the_fix() -> None:
    with pytest.raises(ConnectionProblem, match=r"cannot reach the RPC endpoint ws://127\.0\.0\.1:\d+ .*RPC_URL"):
        connect(f"ws://127.0.0.1:{devchain.free_port()}", timeout=2)


@pytest.fixture(scope="module")
def mining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    """anvil sealing a block every 2 s."""
    chain = devchain.start("anvil", accounts=3, block_time=2, log_path=tmp_path_factory.mktemp("n") / "anvil.log")
    yield chain
    chain.stop()


def _deployed(w3: Web3, node: devchain.DevChain, folder: Path) -> tuple[object, int]:
    settings = load_settings(folder / ".env", environ={}, rpc_url=node.url, deployments_file=folder / "d.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), node.chain_id), w3.eth.block_number


def _request(w3: Web3, dr: object) -> int:
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=3.0, now=now, bidding_window_s=60, event_duration_s=3600,
                        max_price_wei_per_kwh=CAP)
    _, receipt = send_request(dr, Signer(w3, w3.eth.accounts[0]), plan)
    return int(receipt["blockNumber"])


def _listen(poller: LogPoller, interval: float) -> tuple[list[tuple[Event, int]], threading.Event, threading.Thread]:
    heard: list[tuple[Event, int]] = []
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(lambda e: heard.append((e, poller.w3.eth.block_number)),
                                                       stop, interval), daemon=True)
    thread.start()
    return heard, stop, thread


def test_the_utility_listener_hears_a_request_in_the_next_block_by_push(tmp_path: Path,
                                                                        mining: devchain.DevChain) -> None:
    w3 = connect(mining.url)  # HTTP; the push feed finds anvil's WebSocket on the same port
    dr, start = _deployed(w3, mining, tmp_path)
    poller = LogPoller(w3, dr.address, ["ReductionRequested"], StateFile(tmp_path / "u.json"), start_block=start,
                       label="utility")
    heard, stop, thread = _listen(poller, interval=30.0)  # polling alone: up to 15 blocks late
    try:
        wait_until(lambda: poller.push is not None and poller.push.live, timeout=20, what="the subscription")
        mined_in = _request(w3, dr)
        wait_until(lambda: heard, timeout=20, what="the request")
    finally:
        stop.set()
        thread.join(10)
    ((event, head),) = heard
    assert event.block_number == mined_in and head <= mined_in + 1
    assert poller.next_block > mined_in  # the cursor moved as with polling


def test_a_node_without_a_websocket_leaves_the_listener_polling(tmp_path: Path, mining: devchain.DevChain,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    proxy = FlakyRpcProxy(mining.port)  # HTTP JSON-RPC only: a WebSocket handshake is refused
    try:
        w3 = connect(proxy.url)
        dr, start = _deployed(w3, mining, tmp_path)
        poller = LogPoller(w3, dr.address, ["ReductionRequested"], StateFile(tmp_path / "u.json"), start_block=start,
                           label="poll-only")
        with caplog.at_level(logging.INFO, logger="demand_response.push"):
            heard, stop, thread = _listen(poller, interval=0.2)
            try:
                mined_in = _request(w3, dr)
                wait_until(lambda: heard, timeout=20, what="the request, by polling")
            finally:
                stop.set()
                thread.join(10)
    finally:
        proxy.close()
    assert heard[0][0].block_number == mined_in
    assert [r.getMessage() for r in caplog.records if "no WebSocket" in r.getMessage()]
    assert poller.push is None  # closed with the run; it had given up after the one refused handshake


class _HostileNode:
    """A WebSocket on loopback that accepts the subscriptions, then sends junk: text that is
    not JSON, notifications of subscriptions it never made, malformed heads, a flood, and
    then drops the socket; every connection again."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.connections = 0
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, ws) -> None:  # type: ignore[no-untyped-def]
        import json

        self.connections += 1
        for n in range(2):
            request = json.loads(ws.recv(timeout=5))
            ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": f"0x{n + 1}"}))
        ws.send("this is not JSON")
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": "0xffff"}}))
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": "junk"}))
        ws.send(json.dumps([1, 2, 3]))
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                            "params": {"subscription": "0x1", "result": {"number": "not a number"}}}))
        for _ in range(2000):  # a flood of (well-formed) heads
            ws.send(json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                                "params": {"subscription": "0x1", "result": {"number": "0x1"}}}))
        time.sleep(0.5)  # then the socket drops

    def close(self) -> None:
        self._server.shutdown()


def test_a_hostile_push_node_cannot_stop_or_fool_the_listener(tmp_path: Path, mining: devchain.DevChain) -> None:
    hostile = _HostileNode()
    try:
        w3 = connect(mining.url, push=f"ws://127.0.0.1:{hostile.port}")  # WS_URL pointing at it
        dr, start = _deployed(w3, mining, tmp_path)
        poller = LogPoller(w3, dr.address, ["ReductionRequested"], StateFile(tmp_path / "h.json"), start_block=start,
                           label="hostile")
        heard, stop, thread = _listen(poller, interval=0.5)
        try:
            wait_until(lambda: hostile.connections >= 2, timeout=20, what="a reconnection after the drop")
            mined_in = _request(w3, dr)
            wait_until(lambda: heard, timeout=20, what="the request")
            time.sleep(1.0)  # more junk and reconnections
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(10)
    finally:
        hostile.close()
    assert [event.block_number for event, _ in heard] == [mined_in]  # read from the chain, once


def test_the_push_feed_comes_back_after_each_of_several_drops(tmp_path: Path, mining: devchain.DevChain) -> None:
    from demand_response.push import PushFeed

    proxy = TcpProxy(mining.port)
    proxy.up()
    feed = PushFeed(f"ws://127.0.0.1:{proxy.port}", "0x" + "00" * 20, "drops").start()
    try:
        for drop in range(1, 4):
            wait_until(lambda: feed.live, timeout=20, what="the subscription")
            proxy.down()
            wait_until(lambda: not feed.live, timeout=20, what="the drop noticed")
            proxy.up()
            wait_until(lambda: feed.live and feed.reconnects == drop, timeout=20, what=f"reconnection {drop}")
        heads = feed.notifications
        wait_until(lambda: feed.notifications > heads, timeout=10, what="pushes after the last reconnection")
    finally:
        feed.close()
        proxy.down()
    assert not feed.live and feed.offered
