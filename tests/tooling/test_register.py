"""Registered mode through the CLI: a consumer asks, the utility enrols, only then it can bid."""

from __future__ import annotations

import time
from pathlib import Path

from web3 import Web3

from daemon_helpers import run_dr
from demand_response.chain import Signer, TransactionFailed
from demand_response.contract import DemandReduction


def test_enrolment_on_request_then_bidding(tmp_path: Path, chain, w3: Web3) -> None:
    (tmp_path / ".env").write_text(f"RPC_URL={chain.url}\n")
    deployed = run_dr(["deploy", "--registration"], tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    address = (tmp_path / ".env").read_text().split("CONTRACT_ADDRESS=")[1].split()[0]
    dr = DemandReduction.at(w3, address)
    assert dr.registration_required()
    consumer = w3.eth.accounts[33]

    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    rid, _ = dr.request_reduction(Signer(w3, w3.eth.accounts[0]), 1000, now + 120, now + 3720, now + 60, 128 * 10**12)
    try:
        dr.submit_bids(Signer(w3, consumer), rid, [500], [10**12])
        raise AssertionError("an unenrolled consumer could bid")
    except TransactionFailed as exc:
        assert exc.error == "NotEnrolled"

    asked = run_dr(["register", "--account-index", "33"], tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert f"dr register --enrol {consumer}" in asked.stdout
    assert dr.functions.enrolmentOf(consumer).call() == 1  # requested

    enrolled = run_dr(["register", "--enrol", consumer], tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    assert f"enrolled {consumer}" in enrolled.stdout
    events = dr.contract.events.ConsumerEnrolled().get_logs(from_block=0)
    assert [(e["args"]["consumer"], e["args"]["onRequest"]) for e in events] == [(consumer, True)]
    assert dr.submit_bids(Signer(w3, consumer), rid, [500], [10**12])["status"] == 1

    again = run_dr(["register", "--enrol", consumer], tmp_path)
    assert again.returncode == 1 and "AlreadyEnrolled" in again.stderr and "Traceback" not in again.stderr


def test_enrolling_something_that_is_not_an_address_is_one_line_and_reaches_no_chain(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RPC_URL=http://127.0.0.1:9\n")  # nothing listens: the check comes first
    bad = run_dr(["register", "--enrol", "0x1234"], tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: --enrol '0x1234' is not an address: give 0x followed by 40 hex digits"
    assert "Traceback" not in bad.stderr
