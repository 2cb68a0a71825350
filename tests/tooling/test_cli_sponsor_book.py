"""``dr utility request --sponsor-book`` (or ``SPONSOR_BOOK=true`` in .env): the request is posted,
then its whole book is sponsored, so no bidder pays for a book slot's first write."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from web3 import Web3

from demand_response import cli
from demand_response.chain import Signer
from demand_response.config import load_settings
from demand_response.contract import ALL_BOOK_SLOTS, DemandReduction
from demand_response.utility import deploy


def _request(args: list[str], chain, deployed: DemandReduction, capsys: pytest.CaptureFixture,
             monkeypatch: pytest.MonkeyPatch, cwd: Path) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    for key in ("RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "CONSUMER_ACCOUNT",
                "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY", "KEYSTORE_DIR", "DR_ENV_FILE", "SETTLEMENT_TOKEN",
                "SPONSOR_BOOK"):
        monkeypatch.delenv(key, raising=False)
    code = cli.main(["utility", "request", "--rpc-url", chain.url, "--contract", deployed.address,
                     "--target-kw", "2", "--bidding-window", "600", "--max-price-wei", str(128 * 10**12), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return int(re.search(r"request (\d+) posted", out).group(1)), out


def _sponsored(dr: DemandReduction, rid: int) -> list[int]:
    logs = dr.contract.events.BookSponsored().get_logs(argument_filters={"requestId": rid}, from_block=0)
    return [int(e["args"]["slotMask"]) for e in logs]


@pytest.fixture
def deployed(tmp_path: Path, chain, w3: Web3) -> DemandReduction:
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=chain.url,
                             deployments_file=tmp_path / "deployments.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), chain.chain_id)


def test_a_request_is_sponsored_with_the_flag_or_the_setting_and_not_by_default(
        tmp_path: Path, chain, deployed: DemandReduction, capsys, monkeypatch) -> None:
    rid, out = _request(["--sponsor-book"], chain, deployed, capsys, monkeypatch, tmp_path)
    assert re.search(rf"request {rid}: book sponsored for [\d,]+ gas", out)
    assert _sponsored(deployed, rid) == [ALL_BOOK_SLOTS]

    plain, out = _request([], chain, deployed, capsys, monkeypatch, tmp_path)
    assert "sponsored" not in out and _sponsored(deployed, plain) == []

    (tmp_path / ".env").write_text("SPONSOR_BOOK=true\n", encoding="utf-8")
    by_setting, _ = _request([], chain, deployed, capsys, monkeypatch, tmp_path)
    assert _sponsored(deployed, by_setting) == [ALL_BOOK_SLOTS]


def _pinned_sponsor_gas() -> int:
    """``sponsor_book_all`` from the gas pins (tests/contract/test_gas.py), read without a chain."""
    import importlib.util

    path = Path(__file__).parents[1] / "contract" / "test_gas.py"
    spec = importlib.util.spec_from_file_location("_pinned_gas_sponsor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return int(module.PINNED["sponsor_book_all"])


def test_the_help_and_the_env_template_state_the_pinned_sponsorship_gas_to_the_thousand(capsys) -> None:
    about = f"{round(_pinned_sponsor_gas(), -3):,} gas"  # 608,072 -> "608,000 gas"
    with pytest.raises(SystemExit):
        cli.main(["utility", "request", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--sponsor-book after posting, pay ahead for every book slot's first write (about {about})" in help_text
    template = (Path(__file__).parents[2] / ".env.template").read_text(encoding="utf-8")
    assert f"# {about} a request" in template
