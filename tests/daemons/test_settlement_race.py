"""Bug 3 of issue 14: the utility daemon raced a consumer to settle a metered participant,
logged ``TransactionFailed … reverted`` and then withdrew nothing. A race lost is not an
error; a withdrawal worth less than its gas is not sent."""

from __future__ import annotations

import logging
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
