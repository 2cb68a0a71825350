"""The brownie script entry points: ``brownie run scripts/X.py`` against a ganache this test starts,
with a temporary HOME (so ~/.brownie is not touched) and the npm solc behind brownie's compiler
lookup; and the same scripts run with plain ``python``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_helpers import ROOT, dr_env

BROWNIE = Path(sys.executable).parent / "brownie"

pytestmark = pytest.mark.skipif(not BROWNIE.exists(), reason="eth-brownie (dev extra) is not installed")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the project's contracts and scripts, and an environment for brownie."""
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copytree(ROOT / "contracts", proj / "contracts")
    shutil.copytree(ROOT / "scripts", proj / "scripts")
    shutil.copy(ROOT / "brownie-config.yaml", proj / "brownie-config.yaml")
    (proj / "node_modules").mkdir()  # OpenZeppelin, remapped in brownie-config.yaml
    (proj / "node_modules" / "@openzeppelin").symlink_to(ROOT / "node_modules" / "@openzeppelin")
    # The committed artifacts match the sources, so brownie loads them instead of compiling.
    shutil.copytree(ROOT / "build", proj / "build")
    solcx = tmp_path / "solcx"
    solcx.mkdir()
    wrapper = solcx / "solc-v0.8.24"
    wrapper.write_text(f'#!/bin/sh\nexec "{ROOT / "tools" / "solc-npm"}" "$@"\n')
    wrapper.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = dr_env(HOME=str(home), SOLCX_BINARY_PATH=str(solcx))
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}:{env.get('PATH', '')}"  # anvil and ganache-cli for brownie
    return proj, env


def _brownie(args: list[str], proj: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(BROWNIE), *args], cwd=proj, env=env, capture_output=True, text=True, timeout=timeout)


def test_brownie_run_deploy_register_and_plain_python(project, chain) -> None:
    proj, env = project
    added = _brownie(["networks", "add", "Ethereum", "test-local", f"host={chain.url}", "chainid=1337"], proj, env)
    assert added.returncode == 0, added.stdout + added.stderr
    deployed = _brownie(["run", "scripts/deploy.py", "--network", "test-local"], proj, env)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    record = json.loads((proj / "deployments.json").read_text())["test-local"]["1337"]
    assert f"deployed DemandReduction at {record['address']}" in deployed.stdout
    assert f"CONTRACT_ADDRESS={record['address']}" in (proj / ".env").read_text()

    registered = _brownie(["run", "scripts/register.py", "--network", "test-local"], proj, env)
    assert registered.returncode == 0, registered.stdout[-2000:]
    assert "no enrolment is needed" in registered.stdout

    remote = _brownie(["run", "scripts/deploy.py", "main", "remote", "--network", "test-local"], proj, env)
    assert remote.returncode != 0
    assert "`remote` needs UTILITY_ACCOUNT" in remote.stdout + remote.stderr

    plain_env = dict(env, RPC_URL=chain.url)
    plain = subprocess.run([sys.executable, "scripts/deploy.py"], cwd=proj, env=plain_env, capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert json.loads((proj / "deployments.json").read_text())["dev"]["1337"]["address"] in plain.stdout
    assert not (Path(env["HOME"]) / ".brownie" / "accounts").exists() or os.listdir(Path(env["HOME"]) / ".brownie" / "accounts") == []


LIVE_ENV = ("# my live network\nCONTRACT_ADDRESS=0x5FbDB2315678afecb367f032d93F642f64180aa3\n"
            "UTILITY_ACCOUNT=live-utility\nUTILITY_ACCOUNT_PASS=not-on-this-chain\n")


@pytest.mark.parametrize("network, chain_id", [("development", "31337"), ("ganache-cli", "1337")])
def test_brownie_run_deploy_on_a_chain_brownie_starts(project, network: str, chain_id: str) -> None:
    """brownie's own development network (anvil) and its ganache network, started by brownie itself:
    throwaway chains, which never read or write .env (bug 6: CONTRACT_ADDRESS was overwritten
    and the live keystore account was asked for)."""
    proj, env = project
    (proj / ".env").write_text(LIVE_ENV)
    if network == "ganache-cli":  # brownie starts ganache at istanbul by default (README, brownie-config.yaml)
        modified = _brownie(["networks", "modify", "ganache-cli", "evm_version=shanghai"], proj, env)
        assert modified.returncode == 0, modified.stdout + modified.stderr
    deployed = _brownie(["run", "scripts/deploy.py", "--network", network], proj, env)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    record = json.loads((proj / "deployments.json").read_text())[network][chain_id]
    assert f"deployed DemandReduction at {record['address']}" in deployed.stdout
    assert "throwaway chain" in deployed.stdout and "live-utility" not in deployed.stdout
    assert "Compiling" not in deployed.stdout  # the committed artifacts were used as they are
    assert (proj / ".env").read_text() == LIVE_ENV
    if network == "development":
        remote = _brownie(["run", "scripts/deploy.py", "main", "remote", "--network", network], proj, env)
        assert remote.returncode != 0 and "`remote` is for a live network" in remote.stdout + remote.stderr
        assert (proj / ".env").read_text() == LIVE_ENV
