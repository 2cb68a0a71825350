"""``dr utility request --token``: a request settled in an ERC-20 stablecoin from the CLI, its
cap and budget in the token's units; wrong input is one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from web3 import Web3

from demand_response import cli
from demand_response.chain import Signer
from demand_response.config import load_settings
from demand_response.contract import DemandReduction
from demand_response.token import Erc20
from demand_response.utility import deploy


def _main(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
          cwd: Path) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    for key in ("RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "CONSUMER_ACCOUNT",
                "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY", "KEYSTORE_DIR", "DR_ENV_FILE", "SETTLEMENT_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def deployed(tmp_path: Path, chain, w3: Web3) -> DemandReduction:
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=chain.url,
                             deployments_file=tmp_path / "deployments.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), chain.chain_id)


def _test_usd(chain, w3: Web3, capsys, monkeypatch, tmp_path: Path, usd: str = "50") -> str:
    code, out, err = _main(["fund", w3.eth.accounts[0], "--usd", usd, "--rpc-url", chain.url], capsys, monkeypatch,
                           tmp_path)
    assert code == 0, err
    return re.search(r"deployed TestUSD \(TUSD, 6 decimals\) at (0x[0-9a-fA-F]{40})", out).group(1)


def test_a_request_in_a_stablecoin_is_planned_previewed_and_escrowed_in_its_units(
        tmp_path: Path, chain, w3: Web3, deployed: DemandReduction, capsys, monkeypatch) -> None:
    token = _test_usd(chain, w3, capsys, monkeypatch, tmp_path)
    before = Erc20(w3, token).balance_of(w3.eth.accounts[0])
    code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                            "--token", token, "--target-kw", "2", "--bidding-window", "60",
                            "--max-price", "0.384 TUSD/kWh", "--report-window", "60"], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    assert "Price cap 0.384 TUSD/kWh" in out and "Budget escrowed 0.768 TUSD" in out and " ETH" not in out
    rid = int(re.search(r"request (\d+) posted", out).group(1))
    info = deployed.get_request(rid)
    assert info.in_token and info.token == token and info.budget == 768_000 and info.max_price == 384_000
    assert Erc20(w3, token).balance_of(w3.eth.accounts[0]) == before - 768_000

    # SETTLEMENT_TOKEN in .env does the same without the flag, a budget setting the cap
    (tmp_path / ".env").write_text(f"SETTLEMENT_TOKEN={token}\n", encoding="utf-8")
    code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                            "--target-kw", "1", "--bidding-window", "60", "--budget", "0.5"],
                           capsys, monkeypatch, tmp_path)
    assert code == 0, err
    info = deployed.get_request(int(re.search(r"request (\d+) posted", out).group(1)))
    assert info.token == token and info.budget == 500_000


@pytest.mark.parametrize("args, says", [
    (["--max-price-eth", "0.001"], "this request settles in TUSD: give --max-price and --budget in TUSD"),
    (["--max-price", "0.35", "--bond-eth", "0.01", "--report-window", "60"], "--bond-eth are for ether"),
    (["--max-price", "0.3500001"], "has 7 decimals; TUSD has at most 6"),
    (["--max-price", "0.35 USDC/kWh"], "is in USDC/kWh, but this market uses TUSD/kWh"),
    (["--max-price", "0.35", "--budget", "1000000"], "fund it first"),
])
def test_wrong_money_for_a_token_request_is_one_line(tmp_path: Path, chain, w3: Web3, deployed: DemandReduction,
                                                     capsys, monkeypatch, args: list[str], says: str) -> None:
    token = _test_usd(chain, w3, capsys, monkeypatch, tmp_path, usd="1")
    count = deployed.request_count()
    code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                            "--token", token, "--target-kw", "2", "--bidding-window", "60", *args],
                           capsys, monkeypatch, tmp_path)
    assert code != 0 and says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert deployed.request_count() == count


def test_a_token_address_that_is_not_a_contract_is_one_line(tmp_path: Path, chain, deployed: DemandReduction,
                                                            capsys, monkeypatch) -> None:
    for token, says in (("0x1234", "is not an address"), ("0x" + "ab" * 20, "no contract at")):
        code, out, err = _main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                                "--token", token, "--target-kw", "2", "--max-price", "0.35"],
                               capsys, monkeypatch, tmp_path)
        assert code != 0 and says in err and len(err.strip().splitlines()) == 1, err
