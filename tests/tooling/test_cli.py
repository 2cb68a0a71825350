"""``dr`` commands against the session ganache: deploy, accounts, request (flags and prompts),
status, register, fleet, and every user error as one line (wrong password, wrong chain,
no code at the address, unreachable RPC, insufficient funds, bad bids.json)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from daemon_helpers import Daemon, dr_env, run_dr, wait_until
from demand_response import cli
from demand_response.accounts import load_keystore, save_keystore
from demand_response.chain import Signer
from demand_response.config import load_settings
from demand_response.contract import DemandReduction
from demand_response.results import ResultsFile
from demand_response.utility import deploy


def _main(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, cwd: Path) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    for key in ("RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "CONSUMER_ACCOUNT",
                "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY", "KEYSTORE_DIR"):
        monkeypatch.delenv(key, raising=False)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def deployed(tmp_path: Path, chain, w3: Web3) -> DemandReduction:
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=chain.url, deployments_file=tmp_path / "deployments.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), chain.chain_id)


def test_deploy_records_address_per_network_and_in_env(tmp_path: Path, chain, capsys, monkeypatch) -> None:
    (tmp_path / ".env").write_text(f"# my settings\nRPC_URL={chain.url}\nCONTRACT_ADDRESS=0xold\n")
    os.chmod(tmp_path / ".env", 0o600)
    code, out, err = _main(["deploy"], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    record = json.loads((tmp_path / "deployments.json").read_text())["dev"][str(chain.chain_id)]
    env_lines = (tmp_path / ".env").read_text().splitlines()
    assert env_lines == ["# my settings", f"RPC_URL={chain.url}", f"CONTRACT_ADDRESS={record['address']}"]
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert record["address"] in out and record["tx"].startswith("0x") and record["block"] > 0
    code, out, err = _main(["utility", "status"], capsys, monkeypatch, tmp_path)
    assert code == 0 and "(no requests yet)" in out


def test_request_with_prompts_then_status(tmp_path: Path, chain, deployed, capsys, monkeypatch) -> None:
    (tmp_path / ".env").write_text(f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={deployed.address}\n")
    answers = "\n".join(["2.5", "30", "0", "1800", "0.001", "pay-as-bid", "y"]) + "\n"
    result = run_dr(["utility", "request"], tmp_path, stdin=answers)
    assert result.returncode == 0, result.stderr
    assert "Target reduction, kW" in result.stdout and "Price cap 0.001000 ETH/kWh" in result.stdout
    assert "request 1 posted" in result.stdout
    info = deployed.get_request(1)
    assert info.target_watts == 2500 and info.duration == 1800 and info.rule.name == "PAY_AS_BID"
    assert info.max_price == 10**15 and info.max_price % 128 == 0
    code, out, _ = _main(["utility", "status", "--rpc-url", chain.url, "--contract", deployed.address],
                         capsys, monkeypatch, tmp_path)
    assert code == 0 and "pay_as_bid" in out and "open" in out


def test_request_with_budget_sets_the_cap(tmp_path: Path, chain, deployed, capsys, monkeypatch) -> None:
    code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                            "--target-kw", "10", "--event-duration", "3600", "--budget-eth", "0.01"],
                           capsys, monkeypatch, tmp_path)
    assert code == 0, err
    info = deployed.get_request(1)
    assert info.budget == 10**16 and info.max_price == 10**15  # 0.01 ETH / (10 kW * 1 h)
    assert "Budget escrowed 0.010000 ETH" in out


def test_request_refuses_reveals_past_the_event_start_and_fractional_watts(tmp_path: Path, chain, deployed, capsys,
                                                                         monkeypatch) -> None:
    """The planner decides for the CLI as for the web: the event start is never moved."""
    code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                            "--target-kw", "1.0005", "--max-price-eth", "0.001", "--reveal-window", "120"],
                           capsys, monkeypatch, tmp_path)
    assert code == 1 and deployed.request_count() == 0
    line = err.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: ")
    assert "not a whole number of watts" in line and "reveal window (120 s) would end after the event starts" in line
    code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                            "--target-kw", "1.001", "--max-price-eth", "0.001", "--reveal-window", "120",
                            "--event-delay", "120"], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    info = deployed.get_request(1)
    assert info.target_watts == 1001 and info.event_start == info.bidding_deadline + 120


def test_accounts_new_import_list_and_wrong_password(tmp_path: Path, chain, deployed, capsys, monkeypatch) -> None:
    keystores = tmp_path / "keys"
    (tmp_path / "pw").write_text("correct horse\n")
    monkeypatch.setenv("KEYSTORE_DIR", str(keystores))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["accounts", "new", "alice", "--password-file", "pw"]) == 0
    key = Account.create().key.hex()
    (tmp_path / "key").write_text(key)
    assert cli.main(["accounts", "import", "bob", "--password-file", "pw", "--key-file", "key"]) == 0
    assert cli.main(["accounts", "list"]) == 0
    out, _ = capsys.readouterr()
    assert "alice" in out and Account.from_key(key).address in out and "correct horse" not in out
    for name in ("alice", "bob"):
        path = keystores / f"{name}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["version"] == 3
    assert load_keystore("bob", "correct horse").address == Account.from_key(key).address
    assert load_keystore(str(keystores / "bob.json"), "correct horse").address == Account.from_key(key).address

    (tmp_path / ".env").write_text(
        f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={deployed.address}\nUTILITY_ACCOUNT=bob\nUTILITY_ACCOUNT_PASS=wrong one\n"
        f"KEYSTORE_DIR={keystores}\n")
    result = run_dr(["utility", "request", "--target-kw", "1", "--max-price-wei", str(128 * 10**12)], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: wrong password for keystore") and "bob.json" in result.stderr
    assert "wrong one" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keystore_account_signs_and_insufficient_funds_names_account(tmp_path: Path, chain, deployed, w3) -> None:
    key = Account.create().key.hex()
    path, address = save_keystore(str(tmp_path / "poor.json"), key, "pw", kdf_iterations=2)
    (tmp_path / ".env").write_text(
        f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={deployed.address}\nUTILITY_ACCOUNT={path}\nUTILITY_ACCOUNT_PASS=pw\n")
    result = run_dr(["deploy"], tmp_path)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith("error: insufficient funds") and address in line and "0 ETH" in line
    assert "pw" not in line.replace("poor", "")


def test_wrong_chain_is_refused(tmp_path: Path, chain, deployed) -> None:
    result = run_dr(["utility", "status", "--network", "anvil", "--rpc-url", chain.url], tmp_path,
                    env=dr_env(CHAIN_ID="31337"))
    assert result.returncode == 1 and "wrong chain" in result.stderr and "31337" in result.stderr
    (tmp_path / "deployments.json").write_text(json.dumps(
        {"sepolia": {"11155111": {"address": deployed.address, "chain_id": 11155111, "block": 1}}}))
    result = run_dr(["utility", "status", "--rpc-url", chain.url, "--contract", deployed.address], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: wrong chain: contract") and "11155111" in result.stderr


def test_address_without_code_or_wrong_abi_is_refused(tmp_path: Path, chain, w3: Web3) -> None:
    empty = Account.create().address
    (tmp_path / "bids.json").write_text('{"version": 1, "bids": [{"kw": 1, "price_wei_per_kwh": 5}]}')
    for args in (["consumer", "run"], ["utility", "run"], ["utility", "status"]):
        result = run_dr([*args, "--rpc-url", chain.url, "--contract", empty, "--bids-file", "bids.json"]
                        if args[0] == "consumer" else [*args, "--rpc-url", chain.url, "--contract", empty], tmp_path)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"error: no contract code at {empty}")
    # a contract that is not a DemandReduction: a tiny one that reverts on every call
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "data": "0x6005600c60003960056000f3" "60006000fd"}))
    result = run_dr(["utility", "status", "--rpc-url", chain.url, "--contract", receipt["contractAddress"]], tmp_path)
    assert result.returncode == 1 and "not a DemandReduction" in result.stderr


def test_unreachable_rpc_and_bad_bids_file_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bids.json").write_text('{"version": 1, "bids": [{"kw": 1, "price_wei_per_kwh": 5}]}')
    result = run_dr(["consumer", "run", "--rpc-url", "http://127.0.0.1:9", "--bids-file", "bids.json"], tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("error: cannot reach the RPC endpoint http://127.0.0.1:9")
    bad = '{"version": 1, "bids": [{"kw": -1, "price_wei_per_kwh": 5}]}'
    (tmp_path / "bids.json").write_text(bad)
    result = run_dr(["consumer", "run", "--rpc-url", "http://127.0.0.1:9", "--bids-file", "bids.json"], tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: bids.json: bids[0]: kW must be positive, got -1\n"
    assert (tmp_path / "bids.json").read_text() == bad
    result = run_dr(["utility", "status", "--network", "nowhere"], tmp_path)
    assert result.returncode == 1 and "unknown network 'nowhere'" in result.stderr


def test_gridsim_hook_gives_bids_for_a_request(chain, deployed, w3) -> None:
    from demand_response.consumer import gridsim_bids
    from demand_response.contract import RequestInfo

    provider = gridsim_bids(household_index=1, seed=3)
    info = RequestInfo(1, 1, 0, 5000, int(time.time()) + 3600, int(time.time()) + 7200, 0, 128 * 10**14,
                       10**14, 0, 0, 0, 0, 0, 0, 0, 0)
    offers = provider(info)
    assert all(o.watts > 0 and o.price > 0 for o in offers)


def test_fleet_runs_n_agents_with_the_same_logic(tmp_path: Path, chain, deployed, w3) -> None:
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "fleet": [
        {"household": 0, "bids": [{"watts": 1000, "price_wei_per_kwh": 2 * 10**12}]},
        {"household": 1, "bids": [{"watts": 2000, "price_wei_per_kwh": 3 * 10**12}]}]}))
    fleet = Daemon(["fleet" if False else "consumer", "fleet", "-n", "3", "--first-account", "40",
                    "--rpc-url", chain.url, "--contract", deployed.address, "--bids-file", "bids.json",
                    "--results-file", "results.json", "--state-dir", "state"], tmp_path, tmp_path / "fleet.log",
                   env=dr_env(BID_MARGIN="0"))  # bids far too small to pay their fees: no fee check
    try:
        fleet.wait_for("3 agents: listening")
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        utility = Signer(w3, w3.eth.accounts[0])
        rid, _ = deployed.request_reduction(utility, 3500, now + 4, now + 3604, now + 4, 128 * 10**12)
        fleet.wait_for(f"on request {rid} (tx", count=3)
        wait_until(lambda: time.time() > now + 5, timeout=20)
        chain.rpc("evm_mine", [])
        deployed.select_winners(utility, rid)
        results = ResultsFile(tmp_path / "results.json")
        wait_until(lambda: len(results.records()) == 3, timeout=20, what="three fleet results")
    finally:
        assert fleet.stop() == 0
    by_account = {r["account"]: r for r in results.records()}
    agents = w3.eth.accounts[40:43]
    assert [by_account[a]["offered_kw"] for a in agents] == [1.0, 2.0, 1.0]  # entries cycle
    assert sum(r["accepted_watts"] for r in by_account.values()) == 3500
