"""``dr consumer check``: the bids file validated, and priced against the chain's current fees."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_helpers import dr_env, run_dr
from demand_response import devchain
from demand_response import fees


def _bids(tmp_path: Path, bids: list[dict]) -> Path:
    path = tmp_path / "bids.json"
    path.write_text(json.dumps({"version": 1, "bids": bids}))
    return path


def test_check_warns_about_a_bid_too_small_to_pay_its_fees(tmp_path: Path, chain: devchain.DevChain) -> None:
    path = _bids(tmp_path, [{"kw": 2, "price": "0.004"}, {"watts": 10, "price": "0.0001"}])
    out = run_dr(["consumer", "check", "--rpc-url", chain.url, "--bids-file", str(path)], tmp_path,
                 env=dr_env(USD_PER_ETH="3000"))
    assert out.returncode == 0, out.stderr
    assert "bids.json: 2 bid(s), valid" in out.stdout
    assert f"taking part in one open event costs 1 transaction, {fees.plan_gas('open'):,} gas: " in out.stdout and "(≈ $" in out.stdout
    (warning,) = [line for line in out.stdout.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: bid 2 (0.01 kW at 0.0001 ETH/kWh): skip: pays 0.000001 ETH at its ask")


def test_check_says_when_every_bid_pays(tmp_path: Path, chain: devchain.DevChain) -> None:
    path = _bids(tmp_path, [{"kw": 2, "price": "0.004"}])
    out = run_dr(["consumer", "check", "--rpc-url", chain.url, "--bids-file", str(path), "--market", "metered"],
                 tmp_path)
    assert out.returncode == 0, out.stderr
    assert "every bid pays at least 1.5 × that over a 60-minute event" in out.stdout
    assert "warning" not in out.stdout


def test_check_of_a_bad_file_is_one_line_before_any_chain_is_asked(tmp_path: Path) -> None:
    path = _bids(tmp_path, [{"kw": 2, "price": "0.004 EUR/kWh"}])
    out = run_dr(["consumer", "check", "--rpc-url", f"http://127.0.0.1:{devchain.free_port()}",
                  "--bids-file", str(path)], tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "bids[0].price '0.004 EUR/kWh' is in EUR/kWh, but this market uses ETH/kWh" in out.stderr


def test_check_with_a_relay_says_the_household_pays_nothing_and_warns_about_no_bid(
        tmp_path: Path, chain: devchain.DevChain) -> None:
    path = _bids(tmp_path, [{"watts": 10, "price": "0.0001"}])  # far too small to pay its own gas
    out = run_dr(["consumer", "check", "--rpc-url", chain.url, "--bids-file", str(path)], tmp_path,
                 env=dr_env(RELAY_URL="http://127.0.0.1:8546"))
    assert out.returncode == 0, out.stderr
    assert "RELAY_URL is set: the utility's relay places your open bids and pays their gas" in out.stdout
    assert "taking part costs you 0 gas" in out.stdout
    assert "warning" not in out.stdout
    sealed = run_dr(["consumer", "check", "--rpc-url", chain.url, "--bids-file", str(path), "--market", "sealed"],
                    tmp_path, env=dr_env(RELAY_URL="http://127.0.0.1:8546"))
    assert "RELAY_URL" not in sealed.stdout and "warning: bid 1" in sealed.stdout  # sealed bids are not relayed
