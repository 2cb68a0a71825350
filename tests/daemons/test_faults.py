"""Daemon fault injection with real processes on a real anvil (issue 7, daemon half).

* the node is SIGKILLed and restarted from its state file while the consumers wait, while
  they submit and while the utility settles;
* a consumer is SIGKILLed at seeded random points of events, ten times in a row;
* a slow and flaky RPC endpoint (delays, resets, stalls), and a dead one: bounded request
  rate, capped backoff, one-line logs;
* a reorganisation that drops only the consumer's bid (the request stays);
* a full disk under ``results.json`` (RLIMIT_FSIZE in the daemon): one line, old file intact.

Every test checks the chain through ``demand_response.contract`` and the consumers'
``results.json`` against ``market.clear``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, wait_until
from fault_helpers import FlakyRpcProxy, PersistentAnvil
from demand_response.bids import save_bids
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, Status
from demand_response.market import Bid, by_bidder, clear
from demand_response.results import ResultsFile
from demand_response.utility import plan_request, send_request

CAP = 128 * 10**14  # 0.0128 ETH/kWh, tick 0.0001 ETH/kWh
TICK = CAP // 128
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \S.*$")


def _post(w3: Web3, dr: DemandReduction, window: float, target_kw: float = 4.0) -> int:
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=target_kw, now=now, bidding_window_s=int(window), event_duration_s=3600,
                        max_price_wei_per_kwh=CAP)
    rid, _ = send_request(dr, Signer(w3, w3.eth.accounts[0]), plan)  # fresh signer: nonce from the chain
    return rid


def _consumer(folder: Path, url: str, dr: DemandReduction, index: int, start: int, name: str,
              results: Path, extra: list[str] | None = None, **popen) -> Daemon:
    state = folder / name
    state.mkdir(exist_ok=True)
    n = len(list(state.glob("run-*.log")))
    return Daemon(
        ["consumer", "run", "--rpc-url", url, "--contract", dr.address, "--account-index", str(index),
         "--bids-file", str(folder / f"{name}-bids.json"), "--results-file", str(results),
         "--state-dir", str(state), "--from-block", str(start), "--label", name, "--poll-interval", "0.1",
         *(extra or [])],
        folder, state / f"run-{n}.log", **popen)


def _utility(folder: Path, url: str, dr: DemandReduction, start: int) -> Daemon:
    (folder / "utility").mkdir(exist_ok=True)
    return Daemon(["utility", "run", "--rpc-url", url, "--contract", dr.address, "--state-dir",
                   str(folder / "utility"), "--poll-interval", "0.2", "--deployments-file",
                   str(folder / "deployments.json")], folder, folder / "utility" / "utility.log",
                  env=dr_env(START_BLOCK=str(start)))


def _check_settlement(dr: DemandReduction, rid: int, results: Path, accounts: dict[str, str],
                      offers: dict[str, int]) -> None:
    """Settled; exactly one submission per consumer; results.json = market.clear, once each."""
    info = dr.get_request(rid)
    assert info.status == Status.SETTLED, f"request {rid} is {info.status.name}"
    bids = dr.all_bids(rid)
    for name, address in accounts.items():
        mine = [b for b in bids if b.bidder == address]
        assert len(mine) == offers[name], f"{name} has {len(mine)} bids on request {rid}, wants {offers[name]}"
    assert info.submissions == len(accounts), f"request {rid}: {info.submissions} submissions for {len(accounts)}"
    market = [Bid(b.bidder, b.watts, b.price, b.cancelled) for b in bids]
    expected = clear(market, info.target_watts, info.duration, info.max_price, info.budget, info.rule)
    assert info.clearing_price == expected.clearing_price and info.accepted_watts == expected.accepted_watts
    per = by_bidder(market, expected)
    records = [r for r in ResultsFile(results).records() if r["request_id"] == rid
               and r["contract"].lower() == dr.address.lower()]
    assert sorted(r["account"] for r in records) == sorted(accounts.values()), records
    for record in records:
        assert record["accepted_watts"] == per[record["account"]].accepted_watts
        assert record["payout_wei"] == per[record["account"]].payout


def _lines_ok(text: str) -> None:
    """No traceback; every line a time-stamped one-liner (or the utility's closing summary)."""
    assert "Traceback" not in text, text[-3000:]
    for line in text.splitlines():
        assert LINE.match(line) or line.startswith("request "), f"not a one-line log entry: {line!r}"


# -- the node dies and comes back --------------------------------------------------------------


@pytest.fixture
def persistent(tmp_path: Path) -> Iterator[PersistentAnvil]:
    node = PersistentAnvil(tmp_path, accounts=8)
    node.start()
    yield node
    node.stop()


def test_node_killed_and_restarted_while_waiting_submitting_and_settling(tmp_path: Path,
                                                                         persistent: PersistentAnvil) -> None:
    node = persistent
    w3 = connect(node.url)
    dr = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
    start = w3.eth.block_number
    results = tmp_path / "results.json"
    offers = {"c1": [(2000, 40 * TICK), (1500, 60 * TICK)], "c2": [(3000, 50 * TICK)], "c3": [(2500, 30 * TICK)]}
    for name, bids in offers.items():
        save_bids(tmp_path / f"{name}-bids.json", bids)
    accounts = {name: w3.eth.accounts[i] for i, name in enumerate(offers, start=1)}
    time.sleep(1.2)  # the deployment is in the state file
    consumers = [_consumer(tmp_path, node.url, dr, i, start, name, results) for i, name in enumerate(offers, start=1)]
    utility = _utility(tmp_path, node.url, dr, start)
    try:
        for c in consumers:
            c.wait_for("listening for requests")
        utility.wait_for("utility: watching")

        # 1. while they wait
        node.restart(down_for=1.0)
        for d in consumers + [utility]:
            d.wait_for("is back after", timeout=20)

        # 2. while they submit: killed as soon as the first consumer heard the request
        w3 = connect(node.url)
        rid = _post(w3, dr, window=10)
        time.sleep(1.1)  # the request itself reached the state file
        first = _post(w3, dr, window=10)
        wait_until(lambda: any(f"request {first} heard" in c.output() for c in consumers), timeout=10,
                   interval=0.01, what="a consumer hearing the request")
        node.restart(down_for=0.5)
        w3 = connect(node.url)
        if dr.request_count() < first:  # the node lost the request with its last second: post it again
            first = _post(w3, dr, window=10)
        for c in consumers:
            c.wait_for(f"on request {first} (tx", timeout=30)
            c.wait_for(f"on request {rid} (tx", timeout=30)

        # 3. while the utility settles: it sends selectWinners in the second after the deadline
        deadline = dr.get_request(first).bidding_deadline
        wait_until(lambda: time.time() > deadline + 1.05, timeout=30, interval=0.01, what="deadline")
        node.restart(down_for=0.5)
        for c in consumers:
            c.wait_for(f"recorded request {first}", timeout=60)
            c.wait_for(f"recorded request {rid}", timeout=60)
    finally:
        codes = [d.stop() for d in consumers + [utility]]
    assert codes == [0, 0, 0, 0]
    dr = DemandReduction.at(connect(node.url), dr.address)
    for request_id in (rid, first):
        _check_settlement(dr, request_id, results, accounts, {n: len(b) for n, b in offers.items()})
    assert len(ResultsFile(results).records()) == 2 * len(offers)
    for d in consumers + [utility]:
        _lines_ok(d.output())
    assert node.restarts == 3


# -- a node of its own for the other tests ------------------------------------------------------


@pytest.fixture(scope="module")
def anvil(request: pytest.FixtureRequest, start_chain):
    return start_chain(request, "anvil", accounts=12)


def _fresh(anvil) -> tuple[Web3, DemandReduction, int]:
    w3 = connect(anvil.url)
    dr = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
    return w3, dr, w3.eth.block_number


# -- reorganisations -----------------------------------------------------------------------------


def test_reorg_dropping_only_the_bid_and_then_the_settlement(tmp_path: Path, anvil) -> None:
    """The request's block stays; the block with the consumer's bid is reorganised away, and
    later the settlement's block too. The consumer must bid again, the utility settle again."""
    w3, dr, start = _fresh(anvil)
    results = tmp_path / "results.json"
    save_bids(tmp_path / "c-bids.json", [(1500, 30 * TICK)])
    me = w3.eth.accounts[7]
    consumer = _consumer(tmp_path, anvil.url, dr, 7, start, "c", results)
    utility = _utility(tmp_path, anvil.url, dr, start)
    try:
        consumer.wait_for("listening for requests")
        utility.wait_for("utility: watching")
        rid = _post(w3, dr, window=6)
        consumer.wait_for(f"on request {rid} (tx")
        request_block = w3.eth.block_number - 1
        assert len(dr.bids_of(rid, me)) == 1
        # Paused: with the new head pushed, the consumer bids again before a look could see the gap.
        with _paused(consumer):
            anvil.rpc("anvil_reorg", [1, []])  # only the bid's block is replaced
            assert dr.get_request(rid).status == Status.OPEN and w3.eth.block_number >= request_block
            assert dr.bids_of(rid, me) == []
        wait_until(lambda: len(dr.bids_of(rid, me)) == 1, timeout=15, what="the bid placed again after the reorg")
        deadline = dr.get_request(rid).bidding_deadline
        wait_until(lambda: dr.get_request(rid).status == Status.SETTLED, timeout=30, what="settlement")
        # ... and the settlement's block, with whatever came after it (the consumer may have
        # claimed and withdrawn in the blocks since: those go too). Both daemons are paused
        # meanwhile: a claim mined between reading the head and the reorg would shift the
        # replaced blocks past the settlement (seen once: the settlement survived).
        with _paused(consumer, utility):
            settled_in = dr.contract.events.WinnersSelected().get_logs(from_block=start)[-1]["blockNumber"]
            anvil.rpc("anvil_reorg", [w3.eth.block_number - settled_in + 1, []])
            assert dr.get_request(rid).status == Status.OPEN and time.time() > deadline
        wait_until(lambda: dr.get_request(rid).status == Status.SETTLED, timeout=30, what="settlement again")
        consumer.wait_for(f"recorded request {rid}", timeout=30)
    finally:
        codes = [consumer.stop(), utility.stop()]
    assert codes == [0, 0]
    _check_settlement(dr, rid, results, {"c": me}, {"c": 1})
    _lines_ok(consumer.output())
    _lines_ok(utility.output())


@contextlib.contextmanager
def _paused(*daemons):
    """SIGSTOP the daemons (after what they already sent has been mined), SIGCONT them after."""
    for d in daemons:
        os.killpg(d.process.pid, signal.SIGSTOP)
    time.sleep(0.3)
    try:
        yield
    finally:
        for d in daemons:
            os.killpg(d.process.pid, signal.SIGCONT)


# -- a consumer SIGKILLed again and again --------------------------------------------------------

KILL_ROUNDS = 10


def test_consumer_sigkilled_at_random_points_ten_times(tmp_path: Path, anvil) -> None:
    """Each round posts a request and SIGKILLs the consumer at a seeded random moment between
    the request and just after its settlement (before it heard, mid-bid, waiting, mid-claim,
    mid-record, catching up on the previous request); it is restarted at once. History must be exact: one submission per request,
    one record per request, every record = market.clear."""
    rng = random.Random(20240607)
    w3, dr, start = _fresh(anvil)
    results = tmp_path / "results.json"
    save_bids(tmp_path / "c-bids.json", [(1200, 20 * TICK), (800, 70 * TICK)])
    me = w3.eth.accounts[8]
    utility = _utility(tmp_path, anvil.url, dr, start)
    consumer = _consumer(tmp_path, anvil.url, dr, 8, start, "c", results)
    kills, rids = [], []
    try:
        consumer.wait_for("listening for requests")
        utility.wait_for("utility: watching")
        for _ in range(KILL_ROUNDS):
            rids.append(_post(w3, dr, window=3, target_kw=1.5))
            at = rng.uniform(0.0, 4.3)  # deadline at +3 s, settlement at about +4 s
            time.sleep(at)
            consumer.kill()  # possibly still catching up on the last request
            kills.append(round(at, 2))
            consumer = _consumer(tmp_path, anvil.url, dr, 8, start, "c", results)
            consumer.wait_for("listening for requests")
        wait_until(lambda: len(ResultsFile(results).records()) == KILL_ROUNDS, timeout=40,
                   what=f"{KILL_ROUNDS} records after {kills}")
    finally:
        codes = [consumer.stop(), utility.stop()]
    assert codes == [0, 0]
    for rid in rids:
        _check_settlement(dr, rid, results, {"c": me}, {"c": 2})
    text = results.read_text()
    assert json.loads(text)["version"] == 1  # never a torn file
    runs = sorted((tmp_path / "c").glob("run-*.log"))
    assert len(runs) == KILL_ROUNDS + 1
    for run in runs:
        assert "Traceback" not in run.read_text()
    print(f"SIGKILL points (s after the request): {kills}")


# -- slow, flaky and dead RPC ------------------------------------------------------------------


def test_slow_flaky_then_dead_rpc(tmp_path: Path, anvil) -> None:
    w3, dr, start = _fresh(anvil)
    results = tmp_path / "results.json"
    save_bids(tmp_path / "c-bids.json", [(1000, 10 * TICK)])
    me = w3.eth.accounts[9]
    proxy = FlakyRpcProxy(anvil.port, seed=11)
    consumer = _consumer(tmp_path, proxy.url, dr, 9, start, "c", results)
    try:
        consumer.wait_for("listening for requests")
        # slow and flaky: every request 80 ms late, 15 % reset, 5 % stalled 1.5 s then cut
        proxy.set("flaky", delay=0.08, p_reset=0.15, p_stall=0.05, stall=1.5)
        rid = _post(w3, dr, window=10)
        consumer.wait_for(f"on request {rid} (tx", timeout=20)
        assert len(dr.bids_of(rid, me)) == 1
        flaky_hits = len(proxy.hits)
        # dead: every request reset, for about 6 s
        proxy.set("reset")
        down = time.monotonic()
        consumer.wait_for("unreachable", timeout=10)
        time.sleep(4)
        up = time.monotonic()
        rate = proxy.rate(down, up)
        proxy.set("ok")
        consumer.wait_for("is back after", timeout=20)
        rid2 = _post(w3, dr, window=6)
        consumer.wait_for(f"on request {rid2} (tx", timeout=15)
    finally:
        code = consumer.stop()
        proxy.close()
    assert code == 0
    assert len(dr.bids_of(rid, me)) == 1 and len(dr.bids_of(rid2, me)) == 1
    assert dr.get_request(rid).submissions == 1 and dr.get_request(rid2).submissions == 1
    assert rate < 20, f"{rate:.1f} requests/s while the node was down"
    out = consumer.output()
    _lines_ok(out)
    delays = [float(x) for x in re.findall(r"unreachable \(\w+\); retrying in ([\d.]+) s", out)]
    assert delays and max(delays) <= 30.0
    outage = [d for d in delays[-6:]]
    assert outage == sorted(outage) or outage[-1] >= 4.0, delays  # it backs off, it does not spin
    print(f"flaky phase: {flaky_hits} proxied requests; outage: {rate:.2f} requests/s, backoff {delays}")


def test_backoff_is_capped(tmp_path: Path, anvil, caplog: pytest.LogCaptureFixture) -> None:
    """The poller's backoff doubles up to ``max_backoff`` and stays there (30 s in the daemons;
    1 s here to see the cap within seconds)."""
    import logging
    import threading

    from demand_response.listener import LogPoller, StateFile

    w3, dr, start = _fresh(anvil)
    proxy = FlakyRpcProxy(anvil.port)
    poller = LogPoller(connect(proxy.url), dr.address, ["ReductionRequested"], StateFile(tmp_path / "c.json"),
                       start_block=start, label="p")
    proxy.set("reset")
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(lambda e: None, stop, 0.05),
                              kwargs={"max_backoff": 1.0}, daemon=True)
    with caplog.at_level(logging.WARNING, logger="demand_response.listener"):
        began = time.monotonic()
        thread.start()
        time.sleep(4.5)
        rate = proxy.rate(began, time.monotonic())
        proxy.set("ok")
        wait_until(lambda: "is back after" in caplog.text, timeout=5)
        stop.set()
        thread.join(timeout=5)
    proxy.close()
    delays = [float(x) for x in re.findall(r"retrying in ([\d.]+) s", caplog.text)]
    assert delays[:2] == [0.5, 1.0] and set(delays[2:]) == {1.0}, delays
    assert rate < 20, rate


# -- a full disk under results.json ---------------------------------------------------------------


def test_full_disk_keeps_the_old_results_and_says_so_in_one_line(tmp_path: Path, anvil) -> None:
    """RLIMIT_FSIZE in the consumer makes every write past LIMIT bytes fail with EFBIG, as a
    full disk would (the tests run as root, so a read-only folder would not stop them)."""
    import resource

    limit = 64 * 1024
    w3, dr, start = _fresh(anvil)
    results = tmp_path / "results.json"
    filler = {"chain_id": 1, "contract": "0x" + "0" * 40, "account": "0x" + "1" * 40, "label": "old", "note": "x" * 300}
    records, n = [], 0
    while len(json.dumps({"version": 1, "results": records}, indent=2)) < limit - 400:
        records.append(dict(filler, request_id=n))
        n += 1
    ResultsFile(results)._read()  # nothing yet
    from demand_response.artifacts import atomic_write_text

    atomic_write_text(results, json.dumps({"version": 1, "results": records}, indent=2) + "\n")
    before = results.read_bytes()
    save_bids(tmp_path / "c-bids.json", [(1000, 10 * TICK)])
    me = w3.eth.accounts[10]

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    consumer = _consumer(tmp_path, anvil.url, dr, 10, start, "c", results, preexec_fn=small_disk)
    try:
        consumer.wait_for("listening for requests")
        rid = _post(w3, dr, window=3)
        consumer.wait_for(f"on request {rid} (tx")
        deadline = dr.get_request(rid).bidding_deadline
        # The chain's clock, not ours: anvil_reorg (the reorg test, same node) leaves anvil's
        # clock behind the wall clock by the span it replaced.
        def chain_past_deadline() -> bool:
            anvil.rpc("evm_mine", [])
            return w3.eth.get_block("latest")["timestamp"] > deadline

        wait_until(chain_past_deadline, timeout=30, interval=0.25, what="the chain's clock past the deadline")
        dr.select_winners(Signer(w3, w3.eth.accounts[0]), rid)
        consumer.wait_for("cannot write", timeout=20)
        assert results.read_bytes() == before  # the old history is intact, not truncated
        assert not list(tmp_path.glob(".results.json.*.tmp"))
        json.loads(results.read_text())
        assert consumer.process.poll() is None  # still running, retrying
        consumer.wait_for("cannot write", count=2, timeout=10)
        assert consumer.stop() == 0  # space freed, daemon restarted (prlimit needs CAP_SYS_RESOURCE)
        out = consumer.output()
        consumer = _consumer(tmp_path, anvil.url, dr, 10, start, "c", results)
        consumer.wait_for(f"recorded request {rid}", timeout=30)
    finally:
        code = consumer.stop()
    assert code == 0
    _lines_ok(out)
    line = next(x for x in out.splitlines() if "cannot write" in x)
    assert f"cannot write {results}: File too large; retrying in" in line, line
    assert "unreachable" not in out  # not mistaken for an RPC outage
    history = ResultsFile(results).records()
    assert len(history) == n + 1 and history[:n] == records
    _check_settlement(dr, rid, results, {"c": me}, {"c": 1})
