"""The bid relay with real daemons on a real anvil: the utility daemon listens for signed
bids (``RELAY_LISTEN``), consumer daemons sign theirs and post them (``RELAY_URL``).

Households whose bids are relayed send no transaction at all (their nonces do not move),
their bids land in one or a few relay transactions and they are paid by ``claimAndPay``; a
household whose relay is down, or whose relay swallows its entry, lands its own signed
entry exactly once; hostile input gets one clear error line, queues nothing, and the daemon
keeps serving."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, run_dr, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import DemandReduction, Status
from demand_response.relay import sign_bids
from demand_response.results import ResultsFile
from demand_response.utility import deploy

pytestmark = pytest.mark.slow

CAP = 128 * 10**12  # 0.000128 ETH/kWh: on the 128-level grid
HOMES = 4


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=HOMES + 2)


@pytest.fixture(scope="module")
def w3(node: devchain.DevChain) -> Web3:
    return connect(node.url)


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return devchain.dev_private_keys(HOMES + 2, "anvil")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _market(tmp: Path, node: devchain.DevChain, w3: Web3) -> tuple[DemandReduction, Signer, int]:
    settings = load_settings(tmp / ".env", environ={}, rpc_url=node.url, deployments_file=tmp / "deployments.json")
    utility = Signer(w3, w3.eth.accounts[0])
    return deploy(settings, utility, node.chain_id), utility, w3.eth.block_number


def _utility(tmp: Path, node: devchain.DevChain, dr: DemandReduction, port: int) -> Daemon:
    return Daemon(["utility", "run", "--rpc-url", node.url, "--contract", dr.address, "--state-dir",
                   str(tmp / "utility"), "--poll-interval", "0.25"], tmp, tmp / "utility.log",
                  env=dr_env(RELAY_LISTEN=f"127.0.0.1:{port}", RELAY_ALLOW="anyone"))


def _consumer(tmp: Path, node: devchain.DevChain, dr: DemandReduction, key: str, start: int, name: str,
              kw: float, **env: str) -> Daemon:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    (folder / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": kw, "price": "0.0001"}]}))
    return Daemon(
        ["consumer", "run", "--rpc-url", node.url, "--contract", dr.address,
         "--bids-file", str(folder / "bids.json"), "--results-file", str(tmp / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", name],
        tmp, folder / "consumer.log", env=dr_env(CONSUMER_PRIVATE_KEY=key, **env),
    )


def _request(w3: Web3, dr: DemandReduction, utility: Signer, window: int, target_watts: int = 20_000) -> int:
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    rid, _ = dr.request_reduction(utility, target_watts, now + window, now + window + 3600, now + window, CAP)
    return rid


def _submissions(dr: DemandReduction, rid: int, bidder: str) -> list[Any]:
    return dr.contract.events.BidsSubmitted().get_logs(argument_filters={"requestId": rid, "bidder": bidder},
                                                       from_block=0)


def _post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _entry(dr: DemandReduction, chain_id: int, key: str, rid: int, bidder: str, watts: list[int],
           prices: list[int]) -> dict:
    signed = sign_bids(key, dr.address, chain_id, rid, None, watts, prices)
    return {"requestId": rid, **signed, "bidder": bidder}


def test_relayed_households_send_no_transaction_and_are_paid_by_claim_and_pay(
        tmp_path: Path, node: devchain.DevChain, w3: Web3, keys: list[str]) -> None:
    dr, utility_signer, start = _market(tmp_path, node, w3)
    port = _free_port()
    utility = _utility(tmp_path, node, dr, port)
    accounts = [w3.eth.account.from_key(k).address for k in keys[1:HOMES + 1]]
    homes = [_consumer(tmp_path, node, dr, keys[1 + i], start, f"home{i}", 1 + i, RELAY_URL=f"http://127.0.0.1:{port}",
                       RELAY_FALLBACK_SECONDS="2") for i in range(HOMES)]
    # A hasty household falls back at once (its fallback is longer than the bidding window):
    # its own submission races the relay's batch, and whichever lands second is skipped.
    hasty = w3.eth.account.from_key(keys[HOMES + 1]).address
    homes.append(_consumer(tmp_path, node, dr, keys[HOMES + 1], start, "hasty", 1, BID_MARGIN="0",
                           RELAY_URL=f"http://127.0.0.1:{port}", RELAY_FALLBACK_SECONDS="100"))
    hasty_nonce = w3.eth.get_transaction_count(hasty)
    nonces = [w3.eth.get_transaction_count(a) for a in accounts]
    balances = [w3.eth.get_balance(a) for a in accounts]
    try:
        utility.wait_for("relay: households' signed bids are taken at")
        for home in homes:
            home.wait_for("listening for requests")
        utility.wait_for("utility: watching")
        rid = _request(w3, dr, utility_signer, window=12)
        for home in homes[:HOMES]:
            home.wait_for("placed by the utility's relay (tx", timeout=30)
        utility.wait_for(f"request {rid}: winners selected", timeout=30)
        utility.wait_for(f"request {rid}: paid {HOMES + 1} winning bid(s)", timeout=30)
        results = ResultsFile(tmp_path / "results.json")
        wait_until(lambda: len(results.records()) == HOMES + 1, timeout=60, what="every household's record")
        metrics_free = run_dr(["consumer", "results", "--results-file", str(tmp_path / "results.json")], tmp_path)
    finally:
        codes = [h.stop() for h in homes] + [utility.stop()]
    assert codes == [0] * (HOMES + 2)

    # Zero transactions from every household; every bid placed once, paid in full.
    assert [w3.eth.get_transaction_count(a) - n for a, n in zip(accounts, nonces)] == [0] * HOMES
    assert all(len(_submissions(dr, rid, a)) == 1 for a in accounts)
    info = dr.get_request(rid)
    assert info.status == Status.SETTLED and info.accepted_watts == sum(1000 * (1 + i) for i in range(HOMES)) + 1000
    payouts = [dr.outcome_of(rid, a)[1] for a in accounts]
    assert all(p > 0 for p in payouts)
    assert [w3.eth.get_balance(a) - b for a, b in zip(accounts, balances)] == payouts
    # The relay placed them in one or a few batches, each line with gas per entry.
    batches = re.findall(r"relay: request %d: sent (\d+) entr(?:y|ies): (\d+) placed, (\d+) skipped, ([\d,]+) gas "
                         r"\(([\d,]+) gas per entry\)" % rid, utility.output())
    assert batches and len(batches) <= HOMES
    assert sum(int(b[1]) for b in batches) in (HOMES, HOMES + 1)
    relay_txs = {w3.eth.get_transaction(s["transactionHash"])["from"] for a in accounts for s in _submissions(dr, rid, a)}
    assert relay_txs == {utility_signer.address}
    # The hasty household's bids are placed exactly once, by whichever came first.
    placed = _submissions(dr, rid, hasty)
    assert len(placed) == 1 and dr.outcome_of(rid, hasty)[1] > 0
    assert w3.eth.get_transaction_count(hasty) - hasty_nonce <= 1
    by_utility = w3.eth.get_transaction(placed[0]["transactionHash"])["from"] == utility_signer.address
    records = {r["label"]: r for r in ResultsFile(tmp_path / "results.json").records()}
    assert bool(records.pop("hasty").get("relayed")) is by_utility
    for record in records.values():
        assert record["relayed"] is True and record["gas_wei"] == 0 and record["status"] == "won"
        assert record["net_wei"] == record["paid_wei"] > 0
        assert w3.eth.get_transaction(record["bid_txs"][0])["from"] == utility_signer.address
    assert metrics_free.returncode == 0 and metrics_free.stdout.count("(relayed)") == HOMES + by_utility


class _SwallowingRelay(BaseHTTPRequestHandler):
    """A relay that answers 202 and never sends anything (lost entries, or a hostile relay)."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"queued": true}'
        self.send_response(202)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_household_whose_relay_is_down_or_swallows_its_bids_lands_its_own_signed_entry_once(
        tmp_path: Path, node: devchain.DevChain, w3: Web3, keys: list[str]) -> None:
    dr, utility_signer, start = _market(tmp_path, node, w3)
    swallow = ThreadingHTTPServer(("127.0.0.1", 0), _SwallowingRelay)
    threading.Thread(target=swallow.serve_forever, daemon=True).start()
    down, swallowed = w3.eth.account.from_key(keys[1]).address, w3.eth.account.from_key(keys[2]).address
    homes = {
        "down": _consumer(tmp_path, node, dr, keys[1], start, "down", 1, RELAY_URL=f"http://127.0.0.1:{_free_port()}",
                          BID_MARGIN="0"),
        "swallowed": _consumer(tmp_path, node, dr, keys[2], start, "swallowed", 1, BID_MARGIN="0",
                               RELAY_URL=f"http://127.0.0.1:{swallow.server_address[1]}", RELAY_FALLBACK_SECONDS="6"),
    }
    nonces = [w3.eth.get_transaction_count(a) for a in (down, swallowed)]
    try:
        for home in homes.values():
            home.wait_for("listening for requests")
        rid = _request(w3, dr, utility_signer, window=12)
        homes["down"].wait_for(f"request {rid}: the relay cannot be reached", timeout=20)
        homes["down"].wait_for("with our own signed submission (tx", timeout=20)
        homes["swallowed"].wait_for(f"for request {rid} and sent them to the relay", timeout=20)
        homes["swallowed"].wait_for(f"request {rid}: they are not on chain", timeout=30)
        homes["swallowed"].wait_for("with our own signed submission (tx", timeout=20)
        time.sleep(1.0)  # a round or more after landing: nothing is sent again
    finally:
        codes = [h.stop() for h in homes.values()]
        swallow.shutdown()
        swallow.server_close()
    assert codes == [0, 0]
    assert [len(_submissions(dr, rid, a)) for a in (down, swallowed)] == [1, 1]
    assert [w3.eth.get_transaction_count(a) - n for a, n in zip((down, swallowed), nonces)] == [1, 1]
    assert "submitting our signed bids ourselves" in homes["down"].output()
    # The swallowed one waited for the relay until RELAY_FALLBACK_SECONDS before the deadline.
    assert "placed by the utility's relay" not in homes["swallowed"].output()


def test_hostile_input_to_the_relay_gets_one_clear_error_queues_nothing_and_the_daemon_keeps_serving(
        tmp_path: Path, node: devchain.DevChain, w3: Web3, keys: list[str]) -> None:
    dr, utility_signer, _ = _market(tmp_path, node, w3)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/relay/bids"
    utility = _utility(tmp_path, node, dr, port)
    chain_id = node.chain_id
    alice, bob = w3.eth.account.from_key(keys[1]).address, w3.eth.account.from_key(keys[2]).address
    try:
        utility.wait_for("relay: households' signed bids are taken at")
        expired = _request(w3, dr, utility_signer, window=3)
        rid = _request(w3, dr, utility_signer, window=60)
        stalled = socket.create_connection(("127.0.0.1", port))  # a client that never sends a byte
        good = _entry(dr, chain_id, keys[1], rid, alice, [1000], [10**14])
        answers = {
            "garbage": _post(url, b"{not json"),
            "not an object": _post(url, b"[]"),
            "bad signature": _post(url, dict(good, signature="0x" + "1b" * 65)),
            "other bids": _post(url, dict(good, watts=[2000])),
            "another bidder": _post(url, dict(good, bidder=bob)),
            "no such request": _post(url, _entry(dr, chain_id, keys[1], 999, alice, [1000], [10**14])),
        }
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"POST /relay/bids HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 50000000\r\n\r\n" + b"x" * 4096)
            huge = raw.recv(4096).decode()
        time.sleep(3.5)
        w3.provider.make_request("evm_mine", [])
        answers["expired"] = _post(url, _entry(dr, chain_id, keys[1], expired, alice, [1000], [10**14]))
        status, queued = _post(url, good)
        duplicate = _post(url, good)
        other_wrong_path = _post(url.replace("/relay/bids", "/relay/other"), good)
        state = json.loads(urllib.request.urlopen(url.replace("/bids", ""), timeout=10).read())
        utility.wait_for(f"relay: request {rid}: sent 1 entry: 1 placed", timeout=20)
        stalled.close()
    finally:
        code = utility.stop()
    assert code == 0
    assert {k: a[0] for k, a in answers.items()} == {
        "garbage": 400, "not an object": 400, "bad signature": 422, "other bids": 422, "another bidder": 422,
        "no such request": 422, "expired": 422}
    for name, (_, body) in answers.items():
        assert set(body) == {"error"} and "\n" not in body["error"], name
    assert "not JSON" in answers["garbage"][1]["error"]
    assert "bad signature" in answers["another bidder"][1]["error"] and bob in answers["another bidder"][1]["error"]
    assert "does not exist" in answers["no such request"][1]["error"]
    assert "too late" in answers["expired"][1]["error"] or "not open" in answers["expired"][1]["error"]
    assert huge.startswith("HTTP/1.0 413") or huge.startswith("HTTP/1.1 413")
    assert status == 202 and queued["queued"] is True and queued["bidder"] == alice
    assert duplicate[0] == 409 and "already has an entry" in duplicate[1]["error"]
    assert other_wrong_path[0] == 404
    assert state["relayer"] == utility_signer.address and state["contract"] == dr.address
    # Only the good entry was queued, and sent: placed once, by the utility.
    placed = _submissions(dr, rid, alice)
    assert len(placed) == 1 and w3.eth.get_transaction(placed[0]["transactionHash"])["from"] == utility_signer.address
    assert _submissions(dr, rid, bob) == [] and _submissions(dr, expired, alice) == []
    assert "Traceback" not in utility.output()


def test_a_household_that_cannot_sign_for_the_relay_keeps_its_fee_check(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    """An account the node unlocks (``--account-index``, ``dr consumer fleet``) has no key to sign
    with, so it bids with its own transaction and pays the gas: the BID_MARGIN check applies.
    Seen with `dr consumer fleet` and RELAY_URL: 'no fee check', then its own transaction, net < 0."""
    dr, utility_signer, start = _market(tmp_path, node, w3)
    folder = tmp_path / "keyless"
    folder.mkdir()
    (folder / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 0.01, "price": "0.0001"}]}))
    home = Daemon(["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", "1",
                   "--bids-file", str(folder / "bids.json"), "--results-file", str(tmp_path / "results.json"),
                   "--state-dir", str(folder), "--from-block", str(start), "--label", "keyless"],
                  tmp_path, folder / "consumer.log", env=dr_env(RELAY_URL=f"http://127.0.0.1:{_free_port()}"))
    try:
        home.wait_for("listening for requests")
        rid = _request(w3, dr, utility_signer, window=30)
        home.wait_for(f"request {rid}: skipping 0.01 kW at 0.0001 ETH/kWh: skip: pays", timeout=20)
    finally:
        code = home.stop()
    assert code == 0
    assert "no fee check" not in home.output()
    assert _submissions(dr, rid, w3.eth.accounts[1]) == []
