"""chain.py against real anvil nodes: legacy and EIP-1559 fees, stuck-transaction
replacement, nonce resync, and PoA detection through a loopback proxy."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from eth_account import Account

from fault_helpers import FlakyRpcProxy, reply_json
from demand_response import devchain
from demand_response.chain import (
    MAX_GAP, ChainError, RpcBatcher, Signer, TransactionDropped, WaitInterrupted, connect,
)
from demand_response.listener import is_connection_error


@pytest.fixture
def anvil(tmp_path) -> Iterator[devchain.DevChain]:
    node = devchain.start("anvil", accounts=3, log_path=tmp_path / "anvil.log")
    yield node
    node.stop()


def _key(index: int) -> str:
    return devchain.dev_private_keys(index + 1, "anvil")[index]


def test_eip1559_fees_where_there_is_a_base_fee(anvil) -> None:
    w3 = connect(anvil.url)
    signer = Signer.from_key(w3, _key(1))
    assert set(signer.fees().fields) == {"maxFeePerGas", "maxPriorityFeePerGas"}
    receipt = signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    assert receipt["status"] == 1 and receipt["type"] == 2


def test_legacy_fees_where_there_is_none(tmp_path) -> None:
    node = devchain.start("anvil", accounts=3, hardfork="berlin", log_path=tmp_path / "a.log")
    try:
        w3 = connect(node.url)
        signer = Signer.from_key(w3, _key(1))
        assert set(signer.fees().fields) == {"gasPrice"}
        receipt = signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
        assert receipt["status"] == 1 and receipt["type"] == 0
    finally:
        node.stop()


def test_a_stuck_transaction_is_replaced_with_higher_fees(anvil) -> None:
    w3 = connect(anvil.url)
    signer = Signer.from_key(w3, _key(1), stuck_after=0.5, receipt_timeout=30)
    anvil.rpc("evm_setAutomine", [False])  # nothing is mined until we say so
    result: dict = {}

    def send() -> None:
        result["receipt"] = signer.send({"to": w3.eth.accounts[2], "value": 7, "gas": 21_000})

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait for the replacement to reach the pool
        pending = anvil.rpc("txpool_content", [])["pending"]
        txs = [tx for by_nonce in pending.values() for tx in by_nonce.values()]
        if txs and int(txs[0]["maxFeePerGas"], 16) > int(signer.fees().fields["maxFeePerGas"]):
            break
        time.sleep(0.1)
    anvil.rpc("evm_mine", [])
    sender.join(timeout=30)
    anvil.rpc("evm_setAutomine", [True])
    receipt = result["receipt"]
    mined = w3.eth.get_transaction(receipt["transactionHash"])
    assert receipt["status"] == 1
    assert mined["maxFeePerGas"] > w3.eth.get_block(receipt["blockNumber"])["baseFeePerGas"] * 2  # a bumped fee
    assert w3.eth.get_transaction_count(signer.address) == 1  # the replacement took the original's place


def _send_in_thread(signer: Signer, to: str) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def send() -> None:
        try:
            result["receipt"] = signer.send({"to": to, "value": 7, "gas": 21_000})
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            result["error"] = exc
            result["at"] = time.monotonic()

    thread = threading.Thread(target=send)
    thread.start()
    return thread, result


def test_a_receipt_wait_ends_at_once_when_the_daemon_stops(anvil) -> None:
    w3 = connect(anvil.url)
    signer = Signer(w3, w3.eth.accounts[1], stuck_after=60)
    signer.cancel = threading.Event()
    anvil.rpc("evm_setAutomine", [False])  # the receipt never comes
    try:
        thread, result = _send_in_thread(signer, w3.eth.accounts[2])
        time.sleep(0.5)
        assert thread.is_alive()  # still waiting
        stopped_at = time.monotonic()
        signer.cancel.set()
        thread.join(timeout=5)
        assert isinstance(result.get("error"), WaitInterrupted)
        assert result["at"] - stopped_at < 1.0  # the next poll, not the 120 s receipt timeout
        assert is_connection_error(result["error"])  # the daemon keeps the event and retries it
    finally:
        anvil.rpc("evm_setAutomine", [True])


def test_a_node_signed_transaction_dropped_by_the_node_ends_the_wait(anvil) -> None:
    """A reorganisation (or the pool) can drop a transaction the node signed; it cannot be
    re-signed with higher fees like a local one, so the wait says so instead of timing out."""
    w3 = connect(anvil.url)
    signer = Signer(w3, w3.eth.accounts[1], stuck_after=0.5, receipt_timeout=60)
    anvil.rpc("evm_setAutomine", [False])
    try:
        nonce = w3.eth.get_transaction_count(signer.address)
        thread, result = _send_in_thread(signer, w3.eth.accounts[2])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not anvil.rpc("txpool_content", [])["pending"]:
            time.sleep(0.05)
        pending = anvil.rpc("txpool_content", [])["pending"]
        (tx,) = [tx for by_nonce in pending.values() for tx in by_nonce.values()]
        anvil.rpc("anvil_dropTransaction", [tx["hash"]])
        thread.join(timeout=10)
        error = result.get("error")
        assert isinstance(error, TransactionDropped), result
        assert tx["hash"][2:12] in str(error) and "\n" not in str(error)
        assert is_connection_error(error)  # retried by the daemons, like an outage
    finally:
        anvil.rpc("evm_setAutomine", [True])
    # The nonce was given back: the next send uses it and is mined.
    receipt = signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    assert receipt["status"] == 1 and w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == nonce


def test_a_transaction_behind_a_lost_one_is_mined_once_the_gap_is_filled(anvil) -> None:
    """A reorganisation (or a node restarted without its last blocks) loses our mined
    transaction; the signer still counts its nonce, so the next transaction would wait behind
    the gap for ever. Seen in the fault tests: the utility's refund withdrawal hung after the
    settlement it followed was reorganised away. The gap is filled with a 0-value transfer
    to ourselves, and the transaction is mined as sent, once."""
    w3 = connect(anvil.url)
    signer = Signer(w3, w3.eth.accounts[1], stuck_after=0.5, receipt_timeout=60)
    signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    anvil.rpc("anvil_reorg", [1, []])  # its block goes, and anvil drops the transaction
    assert w3.eth.get_transaction_count(signer.address) == 0
    before = w3.eth.get_balance(w3.eth.accounts[2])
    started = time.monotonic()
    receipt = signer.send({"to": w3.eth.accounts[2], "value": 2, "gas": 21_000})
    assert receipt["status"] == 1 and time.monotonic() - started < 10
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 1
    filler = w3.eth.get_transaction_by_block(receipt["blockNumber"] - 1, 0) \
        if w3.eth.get_block(receipt["blockNumber"])["transactions"][0] == receipt["transactionHash"] \
        else w3.eth.get_transaction_by_block(receipt["blockNumber"], 0)
    assert filler["nonce"] == 0 and filler["to"] == signer.address and filler["value"] == 0
    assert w3.eth.get_balance(w3.eth.accounts[2]) == before + 2  # mined once, nothing else sent to it
    assert w3.eth.get_transaction_count(signer.address) == 2


def test_a_gap_too_large_to_fill_ends_the_wait(anvil) -> None:
    """More lost nonces than MAX_GAP (say, a dev chain reset under a running daemon): no
    flood of fillers; the wait ends and the nonce is read again."""
    w3 = connect(anvil.url)
    signer = Signer(w3, w3.eth.accounts[1], stuck_after=0.3, receipt_timeout=60)
    for _ in range(MAX_GAP + 1):
        signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    anvil.rpc("anvil_reorg", [MAX_GAP + 1, []])
    with pytest.raises(TransactionDropped, match="lost nonces"):
        signer.send({"to": w3.eth.accounts[2], "value": 2, "gas": 21_000})
    assert w3.eth.get_transaction_count(signer.address, "latest") == 0  # nothing was filled
    assert signer.send({"to": w3.eth.accounts[2], "value": 3, "gas": 21_000})["status"] == 1


def test_a_restarted_daemon_waits_for_its_pending_transactions(anvil) -> None:
    """A bid sent just before a crash may still be pending when the daemon starts again; the
    consumer waits for it (wait_for_own_pending) before it looks for its mined bids."""
    w3 = connect(anvil.url)
    anvil.rpc("evm_setAutomine", [False])
    try:
        Signer(w3, w3.eth.accounts[1]).send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000}, wait=False)
        restarted = Signer(w3, w3.eth.accounts[1])
        started = time.monotonic()
        assert restarted.wait_for_own_pending(0.6) == 1  # not mined: gives up after the timeout
        assert 0.5 <= time.monotonic() - started < 3
        threading.Timer(0.7, lambda: anvil.rpc("evm_mine", [])).start()
        started = time.monotonic()
        assert restarted.wait_for_own_pending(10) == 0
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        anvil.rpc("evm_setAutomine", [True])
    assert Signer(w3, w3.eth.accounts[2]).wait_for_own_pending(10) == 0  # nothing pending: at once


@pytest.mark.parametrize("batched", [False, True])
def test_a_send_whose_answer_is_lost_is_waited_for_not_sent_again(anvil, batched) -> None:
    """The node gets a locally signed transaction but the connection drops before it answers:
    the signer knows the hash and waits for that transaction; sending the bid again with a
    new nonce could place it twice. (A node that cannot be reached at all still fails fast.)"""
    proxy = FlakyRpcProxy(anvil.port)
    try:
        w3 = connect(proxy.url)
        signer = Signer.from_key(w3, _key(1), stuck_after=5)
        if batched:
            signer.batcher = RpcBatcher(w3)
        to = w3.eth.accounts[2]
        before = w3.eth.get_balance(to)
        proxy.set("lose_send_reply")
        receipt = signer.send({"to": to, "value": 11, "gas": 21_000})
        proxy.set("ok")
        assert receipt["status"] == 1
        assert w3.eth.get_balance(to) == before + 11  # once
        assert w3.eth.get_transaction_count(signer.address) == 1
        proxy.set("reset")  # nothing reaches the node: an error, as before
        with pytest.raises(Exception) as info:
            signer.send({"to": to, "value": 1, "gas": 21_000})
        assert is_connection_error(info.value)
        proxy.set("ok")  # back: the next send takes the nonce the lost one never used
        receipt = signer.send({"to": to, "value": 2, "gas": 21_000})
        assert receipt["status"] == 1 and w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 1
        assert w3.eth.get_balance(to) == before + 13
    finally:
        proxy.close()


def test_the_nonce_is_resynced_when_another_sender_used_the_account(anvil) -> None:
    w3 = connect(anvil.url)
    key = _key(1)
    signer = Signer.from_key(w3, key)
    signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    other = Signer.from_key(w3, key)  # e.g. the same key in another program
    other.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    receipt = signer.send({"to": w3.eth.accounts[2], "value": 1, "gas": 21_000})
    assert receipt["status"] == 1 and w3.eth.get_transaction_count(signer.address) == 3


def test_insufficient_funds_names_the_account_and_balance(anvil) -> None:
    w3 = connect(anvil.url)
    poor = Signer.from_key(w3, Account.create().key.hex(), label="board-7")
    with pytest.raises(ChainError) as info:
        poor.send({"to": w3.eth.accounts[2], "value": 10**18, "gas": 21_000})
    message = str(info.value)
    assert "insufficient funds" in message and "board-7" in message and poor.address in message
    assert "0 ETH" in message and "\n" not in message


class _PoAProxy(BaseHTTPRequestHandler):
    """Forwards JSON-RPC to the node and gives every block 97 bytes of extra data,
    as clique and IBFT chains do."""

    upstream = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        result = reply.get("result") if isinstance(reply, dict) else None
        if isinstance(result, dict) and "extraData" in result:
            result["extraData"] = "0x" + "ab" * 97
        data = json.dumps(reply).encode()
        reply_json(self, data)

    def log_message(self, *args: object) -> None:
        pass


def test_poa_chains_get_the_extra_data_middleware(anvil) -> None:
    handler = type("Proxy", (_PoAProxy,), {"upstream": anvil.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        from web3 import Web3
        from web3.exceptions import ExtraDataLengthError

        with pytest.raises(ExtraDataLengthError):  # what a PoA chain does to a bare Web3
            Web3(Web3.HTTPProvider(url)).eth.get_block("latest")
        w3 = connect(url)
        block = w3.eth.get_block("latest")
        assert len(block["proofOfAuthorityData"]) == 97  # what the middleware moves extraData to
    finally:
        server.shutdown()
