"""A household that won a request in TestUSD and was not paid directly withdraws its TUSD from
the console's results page, on a real anvil: the page offers the TUSD, the button claims and
withdraws it in TUSD (it withdrew ether only, so "Nothing to withdraw" while TUSD was owed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask_wtf")

from demand_response import devchain  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.consumer.open_bids import PAY_GRACE_S  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from demand_response.token import deploy_test_usd, mint_test_usd  # noqa: E402
from flaskapp import create_app  # noqa: E402
from flaskapp.daemon import stop_all  # noqa: E402


def test_a_household_owed_tusd_claims_and_withdraws_it_in_tusd_from_the_results_page(
        request: pytest.FixtureRequest, start_chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = start_chain(request, "anvil", accounts=3)
    keys = devchain.dev_private_keys(3, "anvil")
    w3 = connect(node.url)
    utility, home = Signer.from_key(w3, keys[0]), Signer.from_key(w3, keys[1])
    dr = DemandReduction.deploy(utility)
    usd = deploy_test_usd(utility)
    mint_test_usd(utility, usd.address, utility.address, 10 * 10**6)
    now = int(w3.eth.get_block("latest")["timestamp"])
    rid, _ = dr.request_reduction(utility, 2000, now + 60, now + 3660, now + 60, 512_000, token=usd.address)
    dr.submit_bids(home, rid, [2000], [300_000])  # 2 kW at 0.3 TUSD/kWh
    node.rpc("evm_increaseTime", [61])
    node.rpc("evm_mine", [])
    dr.select_winners(utility, rid)  # winners selected, nobody paid: the household's own claim
    node.rpc("evm_increaseTime", [PAY_GRACE_S + 1])  # later than the utility would have paid
    node.rpc("evm_mine", [])

    monkeypatch.setenv("DR_ENV_FILE", str(tmp_path / "absent.env"))
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "token-withdraw", "WEB_AUTH": "off",
                      "RPC_URL": node.url, "CONTRACT_ADDRESS": dr.address, "DR_ROLE": "consumer",
                      "CONSUMER_PRIVATE_KEY": keys[1], "BIDS_FILE": str(tmp_path / "bids.json"),
                      "RESULTS_FILE": str(tmp_path / "results.json"), "STATE_DIR": str(tmp_path / "state"),
                      "DEPLOYMENTS_FILE": str(tmp_path / "deployments.json")})
    client: Any = app.test_client()
    try:
        page = re.sub(r"\s+", " ", client.get("/consumer/results").get_data(as_text=True))
        assert ">Withdraw (claims 0.6 TUSD first)<" in page  # won and not claimed
        done = client.post("/consumer/withdraw")
        assert done.status_code == 302
        flashed = client.get("/consumer/results").get_data(as_text=True)
        assert "Withdrew 0.6 TUSD to " + home.address in flashed
        assert usd.balance_of(home.address) == 600_000 and dr.owed(home.address, usd.address) == 0
        assert 'data-testid="withdraw"' not in flashed
        again = client.post("/consumer/withdraw")
        assert "Nothing to withdraw: you are owed 0 ETH." in client.get("/consumer/results").get_data(as_text=True)
        assert again.status_code == 302
    finally:
        stop_all()
