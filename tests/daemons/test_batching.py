"""RpcBatcher (a fleet's sends and receipt polls as JSON-RPC batches) against a real anvil,
and the direct calldata encoding of the daemons' fixed-gas transactions."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3

from fault_helpers import reply_json
from demand_response import devchain
from demand_response.chain import ChainError, RpcBatcher, Signer, connect
from demand_response.contract import _call_data, load_artifact
from demand_response.listener import is_connection_error

N = 12


@pytest.fixture(scope="module")
def anvil(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=N + 1)


def _all_at_once(fns: list) -> list:
    """Run ``fns`` in threads released together; their results, or the exceptions they raised."""
    gate = threading.Barrier(len(fns))
    out: list = [None] * len(fns)

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_a_fleets_sends_and_receipt_polls_share_http_requests(anvil) -> None:
    w3 = connect(anvil.url)
    keys = devchain.dev_private_keys(N + 1, "anvil")
    batcher = RpcBatcher(w3)
    # Half sign locally (eth_sendRawTransaction), half are signed by the node (eth_sendTransaction).
    signers = [Signer.from_key(w3, keys[i]) if i % 2 else Signer(w3, w3.eth.accounts[i]) for i in range(1, N + 1)]
    for s in signers:
        s.batcher = batcher
    to = w3.eth.accounts[0]
    before = w3.eth.get_balance(to)
    receipts = _all_at_once([lambda s=s: s.send({"to": to, "value": 1000, "gas": 21_000}) for s in signers])
    assert all(isinstance(r, dict) and r["status"] == 1 for r in receipts), receipts
    assert {r["from"] for r in receipts} == {s.address for s in signers}
    assert all(isinstance(r["transactionHash"], HexBytes) and isinstance(r["blockNumber"], int) for r in receipts)
    assert w3.eth.get_balance(to) == before + 1000 * N
    # One send and at least one receipt poll each, in fewer HTTP requests than calls.
    assert batcher.calls >= 2 * N
    assert batcher.posts < batcher.calls
    # Nonces stay right across batches: a second round from the same signers.
    again = _all_at_once([lambda s=s: s.send({"to": to, "value": 1, "gas": 21_000}) for s in signers])
    assert all(r["status"] == 1 for r in again)


def test_a_bad_transaction_fails_alone_in_its_batch(anvil) -> None:
    w3 = connect(anvil.url)
    batcher = RpcBatcher(w3)
    keys = devchain.dev_private_keys(N + 1, "anvil")
    good = [Signer.from_key(w3, keys[i]) for i in range(1, 5)]
    poor = Signer.from_key(w3, Account.create().key.hex(), label="board-7")
    for s in (*good, poor):
        s.batcher = batcher
    to = w3.eth.accounts[0]
    results = _all_at_once([lambda s=s: s.send({"to": to, "value": 10**18, "gas": 21_000}) for s in (*good, poor)])
    assert all(isinstance(r, dict) and r["status"] == 1 for r in results[:-1]), results
    assert isinstance(results[-1], ChainError)
    assert "insufficient funds" in str(results[-1]) and "board-7" in str(results[-1])


class _NoBatchProxy(BaseHTTPRequestHandler):
    """Forwards single JSON-RPC requests; answers a batch with one error, as some endpoints do."""

    upstream = ""
    seen: list[str] = []
    refusal = "error-object"  # or "http-413": the status some gateways answer a batch with

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if body.lstrip().startswith(b"["):
            self.seen.append("batch")
            if self.refusal == "http-413":
                self.send_response(413)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = json.dumps({"jsonrpc": "2.0", "id": None,
                               "error": {"code": -32600, "message": "batch requests are not supported"}}).encode()
        else:
            self.seen.append(json.loads(body)["method"])
            time.sleep(0.05)  # the calls queued meanwhile go out together: a batch, refused
            request = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                data = response.read()
        reply_json(self, data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("refusal", ["error-object", "http-413"])
def test_a_node_that_refuses_batches_gets_the_calls_one_by_one(anvil, refusal) -> None:
    _NoBatchProxy.upstream, _NoBatchProxy.seen, _NoBatchProxy.refusal = anvil.url, [], refusal
    server = ThreadingHTTPServer(("127.0.0.1", devchain.free_port()), _NoBatchProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w3 = connect(f"http://127.0.0.1:{server.server_address[1]}")
        batcher = RpcBatcher(w3)
        keys = devchain.dev_private_keys(N + 1, "anvil")
        signers = [Signer.from_key(w3, keys[i]) for i in range(1, 9)]
        for s in signers:
            s.batcher = batcher
        to = w3.eth.accounts[0]
        receipts = _all_at_once([lambda s=s: s.send({"to": to, "value": 7, "gas": 21_000}) for s in signers])
        assert all(isinstance(r, dict) and r["status"] == 1 for r in receipts), receipts
        assert _NoBatchProxy.seen.count("batch") == 1 and not batcher.batching  # asked once, then never again
        # Every send reached the node exactly once, whether it went alone or after a refused batch.
        assert _NoBatchProxy.seen.count("eth_sendRawTransaction") == len(signers)
    finally:
        server.shutdown()


def test_an_unreachable_node_fails_every_call_as_a_connection_error() -> None:
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{devchain.free_port()}", request_kwargs={"timeout": 2}))
    batcher = RpcBatcher(w3)
    errors = _all_at_once([lambda: batcher.call("eth_blockNumber", []) for _ in range(6)])
    assert all(isinstance(e, Exception) and is_connection_error(e) for e in errors), errors


def test_an_error_reply_names_the_nodes_message(anvil) -> None:
    batcher = RpcBatcher(connect(anvil.url))
    with pytest.raises(Exception, match="(?i)method|not found|unsupported") as info:
        batcher.call("eth_noSuchMethod", [])
    assert not is_connection_error(info.value)
    assert int(batcher.call("eth_blockNumber", []), 16) >= 0


@pytest.mark.parametrize("fn, args", [
    ("submitBids", (3, [1000, 2**32 - 1], [10**15, 2 * 10**15])),
    ("commitBids", (1, b"\x11" * 32)),
    ("revealBids", (1, [1, 2], [3, 4], b"\x22" * 32)),
    ("reportDelivery", (9, 500)),
    ("postBond", (1,)),
    ("cancelBids", (2, [64, 65])),
])
def test_direct_calldata_is_what_web3_encodes(fn, args) -> None:
    contract = Web3().eth.contract(address="0x5FbDB2315678afecb367f032d93F642f64180aa3", abi=load_artifact()["abi"])
    call = getattr(contract.functions, fn)(*args)
    assert _call_data(call) == call._encode_transaction_data()


def test_calldata_the_encoder_cannot_take_is_left_to_web3() -> None:
    contract = Web3().eth.contract(address="0x5FbDB2315678afecb367f032d93F642f64180aa3", abi=load_artifact()["abi"])
    # web3 accepts a hex string for bytes32; eth_abi does not, so web3 encodes this one.
    call = contract.functions.commitBids(1, "0x" + "11" * 32)
    assert _call_data(call) is None
    assert call._encode_transaction_data().endswith("11" * 32)
