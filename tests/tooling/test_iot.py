"""The light install a consumer board runs (issue 8): no compiler, no node, no brownie, no extras.

* the project's wheel, installed with ``pip install WHEEL`` (no extras, versions from
  ``requirements.lock`` as constraints, exactly as docs/iot.md says) into a fresh venv, contains
  none of brownie, py-solc-x, numpy, flask, pandapower, matplotlib;
* ``dr`` works from that venv, and what needs an extra fails with one line, not a traceback;
* a consumer daemon run from that venv bids on a real ganache, wins, is paid and records
  its result (the same cycle ``make iot-check`` runs under aarch64 emulation);
* a prebuilt solc placed in py-solc-x's folder is used as is, with no node on PATH and
  without py-solc-x ever being asked to download.

The installed size and the daemon's memory are printed (``pytest -s``) and written to
``light-install.json`` in the test's temp folder; nothing here asserts a size or a time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> ModuleType:
    """Load tools/iot/NAME.py under a private module name (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_dr_iot_{name}", ROOT / "tools" / "iot" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_wheel = _tool("build_wheel").build_wheel
run_cycle = _tool("scenario").run_cycle

#: Not one of these may be importable in the light install.
HEAVY = ("brownie", "solcx", "numpy", "flask", "flask_wtf", "pandapower", "pandas", "matplotlib", "pytest",
         "hypothesis", "eth_tester", "playwright")


def _light_env(venv: Path, home: Path) -> dict[str, str]:
    """A board-like environment: the venv's bin, the system's, nothing from the project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SOLC"))
           and k not in ("RPC_URL", "NETWORK", "CONTRACT_ADDRESS", "CONSUMER_ACCOUNT", "CONSUMER_ACCOUNT_PASS",
                         "CONSUMER_PRIVATE_KEY", "DR_ENV_FILE", "KEYSTORE_DIR", "BIDS_FILE", "RESULTS_FILE",
                         "STATE_DIR")}
    env.update(PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def _du_kb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) // 1024


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A fresh venv with the wheel installed, no extras; yields its paths and figures."""
    tmp = tmp_path_factory.mktemp("light")
    wheel = build_wheel(tmp / "dist")
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    home = tmp / "home"
    home.mkdir()
    env = _light_env(venv, home)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", "-c", str(ROOT / "requirements.lock"),
         str(wheel)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp,
    )
    assert install.returncode == 0, f"pip install of the wheel failed (PyPI reachable?):\n{install.stderr[-3000:]}"
    freeze = subprocess.run([str(venv / "bin" / "pip"), "freeze", "--disable-pip-version-check",
                             "--exclude", "demand-response"], capture_output=True, text=True, check=True, env=env).stdout
    site = next((venv / "lib").glob("python3*/site-packages"))
    figures = {"wheel": wheel.name, "packages": freeze.split(), "site_packages_kb": _du_kb(site),
               "pip_setuptools_kb": sum(_du_kb(p) for p in site.glob("*") if p.name.split("-")[0] in ("pip", "setuptools",
                                                                                                  "pkg_resources", "_distutils_hack"))}
    yield {"venv": venv, "env": env, "tmp": tmp, "figures": figures}
    (tmp / "light-install.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\nlight install:", json.dumps({k: v for k, v in figures.items() if k != "packages"}),
          f"({len(figures['packages'])} packages)")


def test_light_install_has_no_compiler_node_brownie_or_extras(light: dict) -> None:
    names = {line.split("==")[0].lower().replace("_", "-") for line in light["figures"]["packages"]}
    assert {"web3", "python-dotenv"} <= names
    assert not names & {"eth-brownie", "py-solc-x", "numpy", "flask", "flask-wtf", "pandapower", "pandas",
                        "matplotlib", "pytest", "hypothesis", "playwright", "vyper"}
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    found = subprocess.run([str(light["venv"] / "bin" / "python"), "-c", probe, *HEAVY], capture_output=True,
                           text=True, check=True, env=light["env"]).stdout.strip()
    assert found == "[]"
    # Importing everything the consumer daemon uses pulls in none of them either.
    probe = ("import sys, demand_response.cli, demand_response.consumer, demand_response.session, "
             "demand_response.accounts, demand_response.utility, demand_response.compiler; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))")
    loaded = subprocess.run([str(light["venv"] / "bin" / "python"), "-c", probe, *HEAVY], capture_output=True,
                            text=True, check=True, env=light["env"]).stdout.strip()
    assert loaded == "[]"


def test_light_cli_runs_and_extras_fail_in_one_line(light: dict) -> None:
    dr = str(light["venv"] / "bin" / "dr")
    for args in (["--help"], ["consumer", "run", "--help"]):
        out = subprocess.run([dr, *args], capture_output=True, text=True, env=light["env"], cwd=light["tmp"])
        assert out.returncode == 0, out.stderr
    assert "--poll-interval" in out.stdout and "--log-file" in out.stdout
    for args, words in ((["compile"], "solc"), (["simulate"], "'sim' extra")):
        out = subprocess.run([dr, *args], capture_output=True, text=True, env=light["env"], cwd=light["tmp"], timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Traceback" not in out.stderr and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
        assert words in out.stderr


def test_light_consumer_bids_wins_and_records(light: dict) -> None:
    work = light["tmp"] / "cycle"
    summary = run_cycle([str(light["venv"] / "bin" / "dr")], work, bidding_window=6, poll_interval=1.0,
                        env=light["env"])
    result = summary["result"]
    assert result["status"] == "won" and result["accepted_watts"] == 1000
    assert result["payout_wei"] == 1000 * 3600 * 30 * 10**14 // 3_600_000 == result["withdrawn_wei"]
    assert summary["bids"] == [{"watts": 1500, "price_wei_per_kwh": 30 * 10**14}]
    light["figures"].update(cycle_timings=summary["timings"], consumer_idle_kb=summary["consumer_idle_kb"],
                            consumer_peak_kb=summary["consumer_peak_kb"])


def test_prebuilt_solc_in_solcx_folder_is_used_without_node_or_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A board that does compile: a prebuilt solc-vX.Y.Z in ~/.solcx (here a temp folder)."""
    solcx = pytest.importorskip("solcx")
    from demand_response import compiler

    folder = tmp_path / "solcx"
    folder.mkdir()
    prebuilt = folder / f"solc-v{compiler.SOLC_VERSION}"
    prebuilt.write_text(f'#!/bin/sh\necho "solc, the solidity compiler commandline interface"\n'
                        f'echo "Version: {compiler.SOLC_VERSION}+commit.e11b9ed9.Linux.g++"\n')
    prebuilt.chmod(0o755)
    monkeypatch.delenv("SOLC_BINARY", raising=False)
    monkeypatch.setenv("SOLCX_BINARY_PATH", str(folder))
    monkeypatch.setenv("PATH", "/nonexistent")  # no node, no solc, no npm on this "board"

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("py-solc-x tried to download a compiler")

    monkeypatch.setattr(solcx, "install_solc", no_download)
    monkeypatch.setattr(solcx.install, "install_solc", no_download)
    monkeypatch.setattr(solcx.install, "_download_solc", no_download)
    monkeypatch.setattr(solcx.install.requests, "get", no_download)  # not even a version list
    monkeypatch.setattr(solcx.install, "_default_solc_binary", solcx.install._default_solc_binary)  # restored after
    found = compiler.resolve_solc()
    assert (found.path, found.origin) == (prebuilt, "py-solc-x folder")
    # py-solc-x (and so brownie) picks the same file, runs it as is, and downloads nothing.
    assert solcx.install.get_executable(compiler.SOLC_VERSION) == prebuilt
    solcx.set_solc_version(compiler.SOLC_VERSION)
    assert str(solcx.get_solc_version()) == compiler.SOLC_VERSION

    prebuilt.unlink()  # and with nothing there, one line that names the places and the fix
    monkeypatch.setattr(compiler, "NPM_ADAPTER", tmp_path / "not-installed" / "solc-npm")
    with pytest.raises(compiler.CompilerError) as info:
        compiler.resolve_solc()
    message = str(info.value)
    assert "\n" not in message
    for part in (str(prebuilt), "solc on PATH", "npm solc", "SOLC_BINARY"):
        assert part in message
