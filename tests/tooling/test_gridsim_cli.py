"""gridsim through the CLI: household bids, the feeder's delivered day, and requests from the simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import dr_env, run_dr
from demand_response.bids import load_bids
from demand_response.chain import Signer
from demand_response.config import load_settings
from demand_response.contract import DemandReduction, Status
from demand_response.utility import deploy

pytest.importorskip("pandapower")


def test_simulate_writes_a_households_bids_and_a_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "bids.json", tmp_path / "house.png"
    args = ["simulate", "--households", "50", "--household", "3", "--seed", "7", "--event-start",
            "1795284000", "--event-end", "1795287600", "--out", str(out)]
    result = run_dr([*args, "--plot", str(plot)], tmp_path)
    assert result.returncode == 0, result.stderr
    offers = load_bids(out).bids
    lines = result.stdout.splitlines()  # a summary for people, not a JSON blob
    assert lines[0] == f"Wrote {len(offers)} bids of household 3 of 50 (seed 7) to {out}"
    assert lines[1].startswith("Event 2026-11-21 ") and "UTC (1 h), outdoor peak 33 °C" in lines[1]
    assert lines[2].startswith(f"Offered {sum(o.watts for o in offers) / 1000:.3f} kW from 1 household(s) at ")
    assert lines[-1] == f"Plot: {plot}"
    assert [o.price for o in offers] == sorted(o.price for o in offers)  # a monotone curve
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    machine = run_dr([*args, "--json"], tmp_path)  # the figures for scripts
    summary = json.loads(machine.stdout)
    assert summary["household"] == 3 and summary["n_bids"] == len(offers) > 0


def test_simulate_prices_the_same_households_in_a_stablecoin_for_a_token_market(tmp_path: Path) -> None:
    args = ["simulate", "--households", "50", "--household", "3", "--seed", "7", "--event-start",
            "1795284000", "--event-end", "1795287600"]
    in_eth, in_usd = tmp_path / "eth.json", tmp_path / "usd.json"
    assert run_dr([*args, "--out", str(in_eth)], tmp_path).returncode == 0
    result = run_dr([*args, "--out", str(in_usd), "--currency", "TUSD"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(in_usd.read_text())["currency"] == "TUSD"
    eth_offers, usd_offers = load_bids(in_eth).bids, load_bids(in_usd).bids
    assert [o.watts for o in usd_offers] == [o.watts for o in eth_offers]
    assert {o.currency.symbol for o in usd_offers} == {"TUSD"}
    # The same $/kWh: wei at 3,000 USD/ETH and TUSD's base units (6 decimals), to 1 micro-dollar.
    for eth_offer, usd_offer in zip(eth_offers, usd_offers):
        assert abs(eth_offer.price * 3000 / 10**18 - usd_offer.price / 10**6) <= 0.5e-6
    assert " TUSD/kWh to " in result.stdout.splitlines()[2]
    bad = run_dr([*args, "--out", str(in_usd), "--currency", "T-USD"], tmp_path)
    assert bad.returncode == 1 and bad.stderr == "error: --currency 'T-USD' is not a token symbol (e.g. TUSD or USDC)\n"


def test_simulate_refuses_a_household_outside_the_population(tmp_path: Path) -> None:
    result = run_dr(["simulate", "--households", "5", "--household", "5"], tmp_path)
    assert result.returncode == 1 and result.stderr == "error: --household must be 0 to 4 (there are 5 households)\n"


def test_feeder_day_with_delivered_reductions(tmp_path: Path) -> None:
    plot = tmp_path / "feeder.png"
    result = run_dr(["simulate", "--feeder", "--seed", "0", "--plot", str(plot), "--json"], tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("Simulating the feeder day")  # progress stays out of the JSON
    summary = json.loads(result.stdout)
    assert summary["overloaded"] and summary["peak_loading_pct"] > 100
    assert summary["accepted_watts"] >= summary["target_watts"] > 0
    assert summary["peak_after_pct"] < summary["peak_before_pct"]
    assert plot.exists()
    from demand_response.cli.simulate import feeder_text

    text = feeder_text(summary)  # what `dr simulate --feeder` prints without --json
    assert f"peaks at {summary['peak_loading_pct']:.1f} % of its rating" in text
    assert f"peak {summary['peak_before_pct']:.1f} % -> {summary['peak_after_pct']:.1f} %" in text


def test_utility_request_from_the_feeder_simulation(tmp_path: Path, chain, w3: Web3) -> None:
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=chain.url,
                             deployments_file=tmp_path / "deployments.json")
    dr: DemandReduction = deploy(settings, Signer(w3, w3.eth.accounts[0]), chain.chain_id)
    (tmp_path / ".env").write_text(f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={dr.address}\n")
    missing_cap = run_dr(["utility", "request", "--from-sim"], tmp_path, timeout=180)
    assert missing_cap.returncode != 0 and "also give --max-price-eth or --budget-eth" in missing_cap.stderr
    result = run_dr(["utility", "request", "--from-sim", "--max-price-eth", "0.0128"], tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "peaks at 109.0 %" in result.stdout
    from demand_response.gridsim import suggest_request

    suggestion = suggest_request(seed=0, outdoor_max_c=38.0, include_profile=False)  # what the CLI asked
    request = dr.get_request(dr.request_count())
    assert request.status == Status.OPEN
    # The target comes out of an iterative power flow; separate processes agree to its tolerance.
    assert abs(request.target_watts - suggestion["target_watts"]) <= 5 and request.target_watts > 14_000
    assert request.event_end - request.event_start == suggestion["event_end"] - suggestion["event_start"] == 2700
    assert request.event_start % 900 == 0 and request.event_start > request.bidding_deadline


def test_consumer_daemon_bids_what_gridsim_offers_for_each_request(tmp_path: Path, chain, w3: Web3) -> None:
    import time

    from daemon_helpers import Daemon
    from demand_response.consumer import gridsim_bids
    from demand_response.market import snap_price_up

    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=chain.url,
                             deployments_file=tmp_path / "deployments.json")
    dr: DemandReduction = deploy(settings, Signer(w3, w3.eth.accounts[0]), chain.chain_id)
    consumer = Daemon(["consumer", "run", "--rpc-url", chain.url, "--contract", dr.address, "--account-index", "30",
                       "--bids-source", "gridsim", "--household", "2", "--results-file", "results.json",
                       "--state-dir", "state", "--label", "sim"], tmp_path, tmp_path / "sim.log",
                      env=dr_env(BID_MARGIN="0"))  # the low cap makes offers worth less than their fees
    try:
        consumer.wait_for("listening for requests")
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        cap = 128 * 10**12
        # A hot late afternoon, when air conditioning gives households something to shed.
        start = now - now % 86400 + 86400 + 17 * 3600
        rid, _ = dr.request_reduction(Signer(w3, w3.eth.accounts[0]), 5000, start, start + 3600, now + 30, cap)
        consumer.wait_for(f"on request {rid} (tx")
    finally:
        assert consumer.stop() == 0
    placed = dr.bids_of(rid, w3.eth.accounts[30])
    offers = gridsim_bids(household_index=2, seed=0)(dr.get_request(rid))
    expected = [(o.watts, snap_price_up(o.price, cap)) for o in offers if snap_price_up(o.price, cap) <= cap]
    assert placed and [(b.watts, b.price) for b in placed] == expected
