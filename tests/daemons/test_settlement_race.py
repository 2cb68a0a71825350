"""Bug 3 of issue 14: the utility daemon raced a consumer to settle a metered participant,
logged ``TransactionFailed … reverted`` and then withdrew nothing. A race lost is not an
error; a withdrawal worth less than its gas is not sent."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from demand_response.contract import Stage
from demand_response.market import required_budget
from demand_response.payments import settle_participant, withdraw_owed
from demand_response.utility import UtilityDaemon, plan_request, send_request

CAP = 128 * 10**14


def _chain_now(env) -> int:
    return int(env.w3.eth.get_block("latest")["timestamp"])


def _past(env, moment: int) -> None:
    env.chain.rpc("evm_increaseTime", [max(1, moment - _chain_now(env) + 1)])
    env.chain.rpc("evm_mine", [])


def _metered_request_with_one_winner(env) -> tuple[int, str]:
    """A metered request whose one winner reported nothing, past its report deadline."""
    consumer = env.consumers[0]
    plan = plan_request(target_kw=1.0, now=max(_chain_now(env), int(time.time())), bidding_window_s=30,
                        event_duration_s=60, max_price_wei_per_kwh=CAP, report_window_s=30)
    rid, _ = send_request(env.dr, env.utility, plan)
    env.dr.submit_bids(consumer, rid, [1000], [CAP // 2])
    _past(env, plan.bidding_deadline)
    env.dr.select_winners(env.utility, rid)
    _past(env, env.dr.terms_of(rid).dispute_deadline)
    return rid, consumer.address


def test_the_utility_that_loses_the_race_to_settle_logs_no_error_and_sends_nothing(
        env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rid, who = _metered_request_with_one_winner(env)
    daemon = UtilityDaemon(env.dr, env.utility, state_path=tmp_path / "cursor.json", start_block=0,
                           chain_id=env.chain.chain_id, auto_withdraw=False)
    daemon.metered.add(rid)
    real = env.dr.participant_of
    raced = []

    def participant_then_the_consumer_settles(request_id: int, consumer: str):
        seen = real(request_id, consumer)
        if not raced and seen.stage == Stage.BID:
            raced.append(env.dr.settle_delivery(env.consumers[0], request_id, consumer))  # a real transaction
        return seen  # what the utility read just before the consumer's settlement was mined

    monkeypatch.setattr(env.dr, "participant_of", participant_then_the_consumer_settles)
    sent_before = env.w3.eth.get_transaction_count(env.utility.address)
    with caplog.at_level(logging.INFO):
        daemon._tick_metered()
    assert raced, "the consumer's settlement was not sent"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert f"request {rid}: {who[:10]} was settled meanwhile by someone else" in caplog.text
    # the utility's settlement was sent and reverted (its nonce moved), and nothing else
    assert env.w3.eth.get_transaction_count(env.utility.address) - sent_before <= 1
    assert real(rid, who).stage == Stage.SETTLED


def test_settling_a_participant_someone_else_settled_is_none_not_an_error(env) -> None:
    rid, who = _metered_request_with_one_winner(env)
    assert settle_participant(env.dr, env.consumers[0], rid, who) is not None
    assert settle_participant(env.dr, env.utility, rid, who) is None


def test_a_withdrawal_worth_less_than_its_gas_is_not_sent(env) -> None:
    now = max(_chain_now(env), int(time.time()))
    plan = plan_request(target_kw=1.0, now=now, bidding_window_s=30, event_duration_s=3600,
                        max_price_wei_per_kwh=CAP, budget_wei=required_budget(1000, 3600, CAP) + 1000)
    rid, _ = send_request(env.dr, env.utility, plan)
    env.dr.submit_bids(env.consumers[0], rid, [1000], [CAP])
    _past(env, plan.bidding_deadline)
    env.dr.select_winners(env.utility, rid)
    assert env.dr.owed(env.utility.address) == 1000  # the unspent budget: 1,000 wei of dust
    sent_before = env.w3.eth.get_transaction_count(env.utility.address)
    assert withdraw_owed(env.dr, env.utility) is None
    assert env.w3.eth.get_transaction_count(env.utility.address) == sent_before
    assert env.dr.owed(env.utility.address) == 1000  # still owed, for a later withdrawal


def test_nothing_owed_sends_no_withdrawal(env) -> None:
    sent_before = env.w3.eth.get_transaction_count(env.consumers[3].address)
    assert env.dr.owed(env.consumers[3].address) == 0
    assert withdraw_owed(env.dr, env.consumers[3]) is None
    assert env.w3.eth.get_transaction_count(env.consumers[3].address) == sent_before


def test_a_settlement_mined_after_someone_elses_in_the_same_block_is_a_race_lost_not_an_error(env) -> None:
    """Both daemons settle after the dispute deadline: the utility's transaction passes its gas
    estimate while the consumer's is still pending, then both are mined in one block and the
    utility's reverts on chain, with no reason to decode (seen with `dr utility run` against a
    `dr consumer run` on ganache)."""
    rid, who = _metered_request_with_one_winner(env)
    result: dict = {}
    env.chain.rpc("miner_stop", [])
    try:
        first = env.w3.eth.send_transaction({"from": who, "to": env.dr.address, "gas": 200_000,
                                             "data": env.dr.contract.encode_abi("settleDelivery", [rid, who]),
                                             "maxFeePerGas": 10**12, "maxPriorityFeePerGas": 10**12})

        def utility_settles() -> None:
            try:
                result["receipt"] = settle_participant(env.dr, env.utility, rid, who)
            except Exception as exc:  # noqa: BLE001 - the test reports it below
                result["error"] = exc

        before = env.w3.eth.get_transaction_count(env.utility.address)
        sender = threading.Thread(target=utility_settles)
        sender.start()
        deadline = time.monotonic() + 20
        while env.utility.address.lower() not in {a.lower() for a in env.chain.rpc("txpool_content", [])["pending"]}:
            assert time.monotonic() < deadline, f"the utility's settlement was never sent: {result}"
            time.sleep(0.05)
        env.chain.rpc("evm_mine", [])
        sender.join(timeout=30)
    finally:
        env.chain.rpc("miner_start", [])
    assert env.w3.eth.get_transaction_receipt(first)["status"] == 1  # the consumer's came first
    assert env.w3.eth.get_transaction_count(env.utility.address) == before + 1  # the utility's was mined too
    assert "error" not in result, result.get("error")
    assert result["receipt"] is None
    assert env.dr.participant_of(rid, who).stage == Stage.SETTLED
