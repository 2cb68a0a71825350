"""Shared fixtures: a real ganache per test session, snapshot-isolated per test.

Brownie's pytest plugin is disabled in pyproject.toml (``-p no:pytest-brownie``); these
fixtures manage the chain themselves.

The suite is organised in tiers, one folder each, and every test carries its tier's marker:

=========  ===============================================================================
unit       pure Python: bids, gridsim, stores; no chain (``-m unit`` runs in seconds)
contract   the contract on a real chain: paths, errors, gas pins, limits, property/stateful
daemons    signer, listener and daemons as real processes, faults against real nodes
tooling    the CLI, brownie scripts, the compiler, the consumer board's light install
web        the Flask app: views, API fuzzing, headless Chromium
e2e        the demo end to end, secrets in every output
devices    device drivers against real peers on loopback: Mosquitto, OCPP, Modbus, HA's REST API
openadr    an OpenADR 2.0b VTN and VENs and the 3.0 API on loopback, with a real chain
ops        metrics, health, JSON logs, the production server, systemd units
ops        metrics, health, JSON logs, the production server, the systemd units
=========  ===============================================================================

``slow`` marks tests over ~20 s (``make test-fast`` leaves them out). ``make test`` runs the
tiers on two xdist workers, one test file per worker at a time (``--dist loadfile``): each
worker starts its own chains, so nothing is shared between workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
from hypothesis import settings as hypothesis_settings
from web3 import Web3

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, decode_revert

# CI (CI=true) runs the same Hypothesis examples every time: a failure there reproduces, and
# the suite's duration stays steady (random examples made one stateful test take 17-65 s).
# Locally each run explores new examples; the DR_*_EXAMPLES variables make longer runs.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    hypothesis_settings.load_profile("ci")


#: Files whose tests take over ~20 s each on 2 cores (measured in a full run); files can also
#: mark themselves with ``pytestmark = pytest.mark.slow``.
SLOW_FILES = frozenset({
    "test_compiler.py", "test_iot.py", "test_scripts.py", "test_gridsim_cli.py",  # tooling
    "test_market_property.py", "test_stateful.py", "test_stateful_terms.py", "test_security_limits.py",
    "test_faults.py", "test_load.py", "test_browser.py", "test_secrets.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier (the folder under tests/ it lives in; markers in
    pyproject.toml), and the tests of ``SLOW_FILES`` as ``slow``."""
    root = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(root).parts
        if len(parts) > 1:
            item.add_marker(getattr(pytest.mark, parts[0]))
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


#: Accounts on the session chain: 0 is the utility, the rest are consumers.
ACCOUNTS = int(os.environ.get("DR_TEST_ACCOUNTS", "60"))
CAP = 128 * 10**12  # 0.000128 ETH per kWh cap; tick = 1e12 wei/kWh


@pytest.fixture(scope="session")
def start_chain(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., devchain.DevChain]:
    """The one way a test gets a chain of its own: ``start_chain(request, "anvil", accounts=5)``.

    The node logs into the session's temp folder and stops when the requesting fixture's scope
    ends (``request`` is that fixture's own ``request``), so a module fixture is two lines.
    """

    def start(request: pytest.FixtureRequest, kind: str = "anvil", **options: Any) -> devchain.DevChain:
        options.setdefault("log_path", tmp_path_factory.mktemp(kind) / f"{kind}.log")
        node = devchain.start(kind, **options)
        request.addfinalizer(node.stop)
        return node

    return start


@pytest.fixture(scope="session")
def chain(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    """A ganache on a free port for the whole session (contract tests snapshot-isolate on it)."""
    return start_chain(request, "ganache", accounts=ACCOUNTS, balance_eth=1_000_000)


@pytest.fixture(scope="session")
def w3(chain: devchain.DevChain) -> Web3:
    """A Web3 connected to the session chain."""
    return connect(chain.url)


@pytest.fixture(autouse=False)
def snapshot(chain: devchain.DevChain) -> Iterator[None]:
    """Revert the chain to its state before the test."""
    snap = chain.rpc("evm_snapshot")
    yield
    chain.rpc("evm_revert", [snap])


@dataclass
class Env:
    """Everything a contract test needs."""

    chain: devchain.DevChain
    w3: Web3
    dr: DemandReduction
    utility: Signer
    consumers: list[Signer]

    def now(self) -> int:
        """Chain time, read from a freshly mined block.

        After ``evm_revert`` the latest block can be minutes older than the next one
        (the chain follows wall-clock time), so reading it would put deadlines in the past.
        """
        self.chain.rpc("evm_mine", [])
        return self.w3.eth.get_block("latest")["timestamp"]

    def advance(self, seconds: int) -> None:
        """Move chain time forward and mine a block."""
        self.chain.rpc("evm_increaseTime", [seconds])
        self.chain.rpc("evm_mine", [])

    def signer(self, address: str) -> Signer:
        """A node-unlocked signer for ``address``."""
        return Signer(self.w3, address)

    def request(self, target: int = 10_000, *, bidding: int = 300, duration: int = 3600,
                cap: int = CAP, rule: int = 0, budget: int | None = None) -> int:
        """Post a request from the utility; returns its id."""
        now = self.now()
        request_id, _ = self.dr.request_reduction(
            self.utility, target, now + bidding + 60, now + bidding + 60 + duration, now + bidding, cap, rule, budget
        )
        return request_id

    def expect_error(self, name: str, call, params: dict | None = None) -> tuple:
        """Assert that ``call`` (a contract function call) reverts with custom error ``name``."""
        with pytest.raises(Exception) as info:
            call.call(params or {"from": self.utility.address})
        decoded = decode_revert(info.value)
        assert decoded is not None, f"expected {name}, got {info.value!r}"
        assert decoded.error == name, f"expected {name}, got {decoded.error}{decoded.error_args}"
        return decoded.error_args

    def deploy_extra(self, artifact: dict, *args, sender: Signer | None = None):
        """Deploy a test contract from ``artifact`` ({abi, bytecode}); returns the web3 contract."""
        sender = sender or self.utility
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = sender.send(factory.constructor(*args).build_transaction({"from": sender.address}))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


@pytest.fixture(scope="session")
def hostile() -> dict:
    """The compiled test-only hostile participants (tests/contracts/Hostile.sol)."""
    from pathlib import Path

    from demand_response.compiler import compile_file

    return compile_file(Path(__file__).parent / "contracts" / "Hostile.sol")["HostileBidder"]


@pytest.fixture(scope="session")
def _deployed(w3: Web3) -> DemandReduction:
    return DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))


@pytest.fixture
def env(chain: devchain.DevChain, w3: Web3, _deployed: DemandReduction, snapshot: None) -> Env:
    """A deployed open-mode contract; chain state is reverted after each test."""
    accounts = w3.eth.accounts
    return Env(chain, w3, _deployed, Signer(w3, accounts[0]), [Signer(w3, a) for a in accounts[1:]])
