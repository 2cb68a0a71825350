"""How ``dr`` reads to a newcomer: help for every option, help when nothing is asked, only the
options a command uses, `dr fund` on dev chains only, a named network's chain id always checked,
and a corrupt salts file as one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from daemon_helpers import dr_env, run_dr
from demand_response import cli, devchain
from demand_response.chain import Signer
from demand_response.config import load_settings
from demand_response.consumer import state_path_for
from demand_response.contract import DemandReduction
from demand_response.utility import deploy

CONNECTION = {"--network", "--rpc-url", "--contract", "--deployments-file"}


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) below ``parser``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _main(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
          cwd: Path) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    for key in ("RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "CONSUMER_ACCOUNT",
                "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY", "KEYSTORE_DIR", "DR_ENV_FILE"):
        monkeypatch.delenv(key, raising=False)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_option_of_every_command_has_help() -> None:
    missing = [f"dr {' '.join(path)} {action.option_strings or action.dest}"
               for path, parser in _parsers(cli.build_parser())
               for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert missing == []


def test_every_commands_help_renders() -> None:
    # argparse formats help lazily: a bare "%" in a help text only fails when someone asks for --help.
    broken = []
    for path, parser in _parsers(cli.build_parser()):
        try:
            parser.format_help()
        except (ValueError, TypeError, KeyError) as exc:
            broken.append(f"dr {' '.join(path)}: {exc}")
    assert broken == []


def test_every_command_group_lives_in_its_own_module() -> None:
    groups = {path[0]: parser for path, parser in _parsers(cli.build_parser()) if len(path) == 1}
    assert set(groups) == set(cli.GROUPS)
    for path, parser in _parsers(cli.build_parser()):
        func = parser.get_default("func")
        if func is not None:
            assert func.__module__ == f"demand_response.cli.{path[0]}", path


def test_accounts_commands_offer_no_connection_options_they_would_ignore() -> None:
    accounts = [p for path, p in _parsers(cli.build_parser()) if path[:1] == ("accounts",) and len(path) == 2]
    assert len(accounts) == 3
    for parser in accounts:
        assert not _options(parser) & CONNECTION and "--env-file" in _options(parser)


def test_dr_alone_and_a_group_alone_print_help_not_an_error(capsys, monkeypatch, tmp_path: Path) -> None:
    code, out, err = _main([], capsys, monkeypatch, tmp_path)
    assert code == 0 and err == "" and out.startswith("usage: dr") and "fund" in out and "simulate" in out
    code, out, err = _main(["utility"], capsys, monkeypatch, tmp_path)
    assert code == 0 and err == "" and out.startswith("usage: dr utility") and "status" in out


def test_python_m_demand_response_runs_the_same_cli(tmp_path: Path) -> None:
    result = run_dr(["node", "--help"], tmp_path)
    assert result.returncode == 0 and "TCP port on 127.0.0.1" in result.stdout


@pytest.fixture
def deployed(tmp_path: Path, chain, w3: Web3) -> DemandReduction:
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=chain.url,
                             deployments_file=tmp_path / "deployments.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), chain.chain_id)


def test_fund_sends_test_eth_from_an_unlocked_account_or_a_key(tmp_path: Path, chain, w3: Web3, capsys,
                                                               monkeypatch) -> None:
    fresh = Account.create().address
    code, out, err = _main(["fund", fresh, "--eth", "2.5", "--rpc-url", chain.url], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    assert w3.eth.get_balance(fresh) == 25 * 10**17
    assert f"to {fresh}" in out and "its balance is now 2.5 ETH" in out
    funder = Account.create()
    Signer(w3, w3.eth.accounts[0]).send({"to": funder.address, "value": 10**18})
    (tmp_path / "key").write_text(funder.key.hex())
    code, out, err = _main(["fund", fresh, "--eth", "0.1", "--key-file", "key", "--rpc-url", chain.url],
                           capsys, monkeypatch, tmp_path)
    assert code == 0, err
    assert w3.eth.get_balance(fresh) == 26 * 10**17 and f"from {funder.address}" in out
    assert funder.key.hex() not in out + err


@pytest.mark.parametrize("args, words", [
    (["0x1234", "--eth", "1"], "is not an address"),
    ([None, "--eth", "0"], "above 0 ETH"),
    ([None, "--eth", "1e-19"], "finer than 1 wei"),
    ([None, "--from-account", "9999"], "--from-account must be"),
])
def test_fund_refuses_bad_input_with_one_line(args: list, words: str, tmp_path: Path, chain, capsys,
                                              monkeypatch) -> None:
    args = [a if a is not None else Account.create().address for a in args]
    code, out, err = _main(["fund", *args, "--rpc-url", chain.url], capsys, monkeypatch, tmp_path)
    assert code == 1 and len(err.strip().splitlines()) == 1 and words in err


def test_fund_refuses_a_chain_that_is_not_a_dev_chain(tmp_path: Path, capsys, monkeypatch) -> None:
    live_like = devchain.start("anvil", accounts=1, chain_id=11155111, log_path=tmp_path / "anvil.log")
    try:
        target = Account.create().address
        code, out, err = _main(["fund", target, "--rpc-url", live_like.url], capsys, monkeypatch, tmp_path)
        assert code == 1 and out == ""
        assert err.startswith("error: dr fund only sends test ETH on a local dev chain") and "11155111" in err
        assert len(err.strip().splitlines()) == 1
        assert connect_balance(live_like.url, target) == 0
    finally:
        live_like.stop()


def connect_balance(url: str, address: str) -> int:
    return Web3(Web3.HTTPProvider(url)).eth.get_balance(address)


def test_a_named_network_checks_its_chain_id_also_when_rpc_url_is_set(tmp_path: Path, chain, deployed,
                                                                        capsys, monkeypatch) -> None:
    (tmp_path / ".env").write_text(f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={deployed.address}\n")
    for network, expected in (("sepolia", 11155111), ("mainnet", 1)):
        code, out, err = _main(["utility", "status", "--network", network], capsys, monkeypatch, tmp_path)
        assert code == 1 and err.startswith("error: wrong chain") and f"chain id {expected}" in err, err
    (tmp_path / ".env").write_text(f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={deployed.address}\nCHAIN_ID=1337\n")
    code, out, err = _main(["utility", "status", "--network", "sepolia"], capsys, monkeypatch, tmp_path)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "sepolia" in err and "11155111" in err and "CHAIN_ID" in err and "1337" in err
    code, out, err = _main(["utility", "status", "--network", "dev"], capsys, monkeypatch, tmp_path)
    assert code == 0, err


def _salts_file(state: Path, chain_id: int, contract: str, account: str) -> Path:
    """Where `dr consumer run` keeps its salts (config.salts_file once every path comes from
    the settings; next to the cursor file before)."""
    try:
        from demand_response.config import salts_file
    except ImportError:
        cursor = state_path_for(state, chain_id, contract, account, "consumer")
        return cursor.with_name(cursor.name.replace(".cursor-", ".salts-", 1))
    return salts_file(state, "consumer", chain_id, contract, account)


def test_a_corrupt_salts_file_is_one_line_not_a_traceback(tmp_path: Path, chain, deployed, w3: Web3) -> None:
    account = w3.eth.accounts[7]
    state = tmp_path / "state"
    state.mkdir()
    salts = _salts_file(state, chain.chain_id, deployed.address, account)
    salts.write_text('{"version": 1, "entries": [{"request_id": "not json enough"')
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 1, "price_wei_per_kwh": 10**12}]}))
    result = run_dr(["consumer", "run", "--rpc-url", chain.url, "--contract", deployed.address, "--account-index", "7",
                     "--bids-file", "bids.json", "--state-dir", "state", "--results-file", "results.json"],
                    tmp_path, env=dr_env())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "unreadable salt file" in lines[-1] and "move it aside" in lines[-1]
    assert [line for line in lines if line.startswith("error")] == lines[-1:]
    assert salts.read_text().endswith('"not json enough"')  # left as it was, for the owner to look at


def test_status_says_selected_until_every_winner_is_paid_then_settled(tmp_path: Path, chain, deployed, w3: Web3,
                                                                       capsys, monkeypatch) -> None:
    """Bug 5: winners selected and nobody paid was shown as 'settled'."""
    utility, bidder = Signer(w3, w3.eth.accounts[0]), Signer(w3, w3.eth.accounts[9])
    chain.rpc("evm_mine", [])
    now = int(w3.eth.get_block("latest")["timestamp"])
    rid, _ = deployed.request_reduction(utility, 2000, now + 3600, now + 7200, now + 5, 128 * 10**12)
    deployed.submit_bids(bidder, rid, [1500], [64 * 10**12])
    chain.rpc("evm_increaseTime", [10])
    chain.rpc("evm_mine", [])
    deployed.select_winners(utility, rid)
    args = ["utility", "status", "--rpc-url", chain.url, "--contract", deployed.address]

    code, out, err = _main(args, capsys, monkeypatch, tmp_path)
    assert code == 0, err
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == [str(rid)])
    assert row[1:3] == ["selected", "scheduled"] and "settled" not in row
    header = out.splitlines()[0]
    assert "promised" in header and "paid" in header and "currency" in header and "payout" not in out
    assert row[5] == "ETH"
    promised = deployed.get_request(rid).reserved
    assert row[-2:] == [f"{promised / 10**18:.6f}", "0.000000"]  # promised, nothing paid yet

    deployed.claim(bidder, rid, [b.bid_id for b in deployed.bids_of(rid, bidder.address)])
    code, out, err = _main(args, capsys, monkeypatch, tmp_path)
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == [str(rid)])
    assert row[1:3] == ["settled", "settled"] and row[-1] == row[-2] == f"{promised / 10**18:.6f}"


def test_fund_usd_deploys_the_test_stablecoin_then_mints_more_of_it(tmp_path: Path, chain, w3: Web3, capsys,
                                                                   monkeypatch) -> None:
    from demand_response.token import Erc20

    fresh = Account.create().address
    code, out, err = _main(["fund", fresh, "--usd", "250.5", "--rpc-url", chain.url], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    token = out.split("deployed TestUSD (TUSD, 6 decimals) at ")[1].split(";")[0]
    usd = Erc20(w3, token)
    assert usd.balance_of(fresh) == 250_500_000 and usd.currency().decimals == 6
    assert "minted 250.5 TUSD" in out and w3.eth.get_balance(fresh) == 0  # --usd alone sends no ETH
    code, out, err = _main(["fund", fresh, "--usd", "1", "--token", token, "--rpc-url", chain.url],
                           capsys, monkeypatch, tmp_path)
    assert code == 0 and "its balance is now 251.5 TUSD" in out and "deployed" not in out
    code, out, err = _main(["fund", fresh, "--usd", "1", "--token", token, "--from-account", "1",
                            "--rpc-url", chain.url], capsys, monkeypatch, tmp_path)
    assert code == 1 and "only its deployer" in err and len(err.strip().splitlines()) == 1
    code, out, err = _main(["fund", fresh, "--usd", "0.0000001", "--rpc-url", chain.url], capsys, monkeypatch,
                           tmp_path)
    assert code == 1 and len(err.strip().splitlines()) == 1
