"""Bug 1 of issue 14: two daemons could bid for one account and collide on its nonce. Every
daemon now holds its accounts' locks; a second one is refused in one line, and another
program (the web console) can see who holds an account."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import Daemon, run_dr
from demand_response import devchain
from demand_response.chain import Signer
from demand_response.consumer import AgentSpec, ConsumerService, file_bids, state_path_for
from demand_response.contract import DemandReduction
from demand_response.errors import AccountBusy
from demand_response.locks import holder
from demand_response.results import ResultsFile

INDEX = 7


def _cli_consumer(chain: devchain.DevChain, dr: DemandReduction, tmp: Path, state: Path, *extra: str) -> list[str]:
    (tmp / "bids.json").write_text('{"version": 1, "bids": [{"kw": 1.0, "price_wei_per_kwh": 100000000000000}]}')
    return ["consumer", *extra, "--rpc-url", chain.url, "--contract", dr.address, "--bids-file",
            str(tmp / "bids.json"), "--results-file", str(tmp / "results.json"), "--state-dir", str(state),
            "--from-block", "0"]


def test_a_second_daemon_for_an_account_a_cli_daemon_uses_is_refused(
        chain: devchain.DevChain, w3: Web3, _deployed: DemandReduction, tmp_path: Path) -> None:
    account = w3.eth.accounts[INDEX]
    state = tmp_path / "state"
    first = Daemon(_cli_consumer(chain, _deployed, tmp_path, state, "run", "--account-index", str(INDEX)),
                   tmp_path, tmp_path / "first.log")
    try:
        first.wait_for("listening for requests")
        found = holder(state, chain.chain_id, account)
        assert found is not None and found.pid == first.process.pid and found.daemon == "consumer run"

        second = run_dr(_cli_consumer(chain, _deployed, tmp_path, state, "run", "--account-index", str(INDEX)),
                        tmp_path)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"error: account {account.lower()} is already used by consumer run (pid {first.process.pid}) on chain "
            f"{chain.chain_id}; stop that daemon first (one daemon per account)"]

        fleet = run_dr(_cli_consumer(chain, _deployed, tmp_path, state, "fleet", "-n", "2",
                                     "--first-account", str(INDEX - 1)), tmp_path)
        assert fleet.returncode == 1 and "already used by consumer run" in fleet.stderr
        assert holder(state, chain.chain_id, w3.eth.accounts[INDEX - 1]) is None  # the fleet let go of the other

        # The web console builds the same ConsumerService: it hears of the busy account at once.
        service = ConsumerService(
            _deployed, chain.chain_id, [AgentSpec(Signer(w3, account), file_bids(tmp_path / "bids.json"), "web")],
            state_path=state_path_for(state, chain.chain_id, _deployed.address, account),
            results=ResultsFile(tmp_path / "results.json"), start_block=0, daemon="web console")
        with pytest.raises(AccountBusy) as caught:
            service.acquire_locks()
        assert caught.value.pid == first.process.pid
        with pytest.raises(AccountBusy):
            service.run(threading.Event())
    finally:
        assert first.stop() == 0
    assert holder(state, chain.chain_id, account) is None
