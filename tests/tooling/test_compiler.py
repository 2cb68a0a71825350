"""The compiler toolchain: solc resolution order, committed artifacts, brownie agreement."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from demand_response import compiler
from demand_response.artifacts import PACKAGE_ARTIFACT_DIR

ROOT = Path(__file__).resolve().parents[2]


def _fake_solc(path: Path, version: str = compiler.SOLC_VERSION, forward: bool = True) -> Path:
    """An executable that answers like solc: a prebuilt binary stand-in (wraps solcjs)."""
    body = f'if [ "$1" = "--version" ]; then echo "solc, the solidity compiler commandline interface"; ' \
           f'echo "Version: {version}+commit.e11b9ed9.Linux.g++"; exit 0; fi\n'
    if forward:
        body += f'exec "{compiler.NPM_ADAPTER}" "$@"\n'
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SOLC_BINARY, an empty py-solc-x folder, and a PATH without solc."""
    monkeypatch.delenv("SOLC_BINARY", raising=False)
    folder = tmp_path / "solcx"
    folder.mkdir()
    monkeypatch.setenv("SOLCX_BINARY_PATH", str(folder))
    node_dir = str(Path(shutil.which("node")).parent)
    monkeypatch.setenv("PATH", f"{node_dir}:/usr/bin:/bin")
    return folder


def test_solc_binary_comes_first(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_solc(clean_env / f"solc-v{compiler.SOLC_VERSION}")
    explicit = _fake_solc(tmp_path / "my-solc")
    monkeypatch.setenv("SOLC_BINARY", str(explicit))
    found = compiler.resolve_solc()
    assert (found.path, found.origin) == (explicit, "SOLC_BINARY")


def test_solc_binary_with_wrong_version_or_path_is_a_clear_error(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOLC_BINARY", str(_fake_solc(tmp_path / "old-solc", version="0.8.13")))
    with pytest.raises(compiler.CompilerError, match=r"reports version 0\.8\.13, need 0\.8\.24"):
        compiler.resolve_solc()
    monkeypatch.setenv("SOLC_BINARY", str(tmp_path / "missing"))
    with pytest.raises(compiler.CompilerError, match="is not an executable file"):
        compiler.resolve_solc()


def test_prebuilt_binary_in_solcx_folder_is_used_and_nothing_is_downloaded(clean_env: Path, tmp_path: Path) -> None:
    prebuilt = _fake_solc(clean_env / f"solc-v{compiler.SOLC_VERSION}")
    found = compiler.resolve_solc()
    assert (found.path, found.origin) == (prebuilt, "py-solc-x folder")
    # py-solc-x itself sees it as installed: no download is ever needed.
    import solcx

    assert [str(v) for v in solcx.get_installed_solc_versions()] == [compiler.SOLC_VERSION]
    # It compiles (a small fixture: the full project's compile is covered by the artifact test).
    out = compiler.compile_file(ROOT / "tests" / "contracts" / "Hostile.sol")
    assert out["HostileBidder"]["abi"] and out["HostileBidder"]["bytecode"]


def test_solc_on_path_is_third(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = _fake_solc(bin_dir / "solc")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert compiler.resolve_solc().path == on_path
    _fake_solc(on_path, version="0.7.6")  # wrong version on PATH: fall through to npm
    assert compiler.resolve_solc().origin == "npm solcjs"


def test_npm_solcjs_is_the_fallback(clean_env: Path) -> None:
    found = compiler.resolve_solc()
    assert (found.path, found.origin, found.version) == (compiler.NPM_ADAPTER, "npm solcjs", "0.8.24")


def test_no_compiler_names_every_place_searched(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "NPM_ADAPTER", clean_env / "no-adapter")
    with pytest.raises(compiler.CompilerError) as info:
        compiler.resolve_solc()
    message = str(info.value)
    assert "\n" not in message
    for place in (f"{clean_env}/solc-v0.8.24", "solc on PATH", "no-adapter (npm solc)", "npm ci", "SOLC_BINARY"):
        assert place in message


@pytest.fixture(scope="module")
def brownie_compile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """``brownie compile`` of a copy of the project, started in the background at once: it runs
    while ``test_committed_artifacts_match_a_fresh_compile`` compiles with the adapter (two
    solcjs compiles of ~30 s each, side by side on two cores instead of one after the other)."""
    tmp = tmp_path_factory.mktemp("brownie")
    project = tmp / "project"
    project.mkdir()
    shutil.copytree(ROOT / "contracts", project / "contracts")
    shutil.copy(ROOT / "brownie-config.yaml", project / "brownie-config.yaml")
    (project / "node_modules").mkdir()
    (project / "node_modules" / "@openzeppelin").symlink_to(ROOT / "node_modules" / "@openzeppelin")
    solcx_dir = tmp / "solcx"
    compiler.install_solcx_shim(solcx_dir)
    home = tmp / "home"  # brownie writes its data folder under HOME; keep the real one clean
    home.mkdir()
    env = dict(os.environ, SOLCX_BINARY_PATH=str(solcx_dir), HOME=str(home))
    brownie = Path(sys.executable).parent / "brownie"
    proc = subprocess.Popen([str(brownie), "compile"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    yield project, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_committed_artifacts_match_a_fresh_compile(tmp_path: Path, brownie_compile) -> None:
    written = compiler.compile_project(ROOT, tmp_path / "build", tmp_path / "pkg")
    assert sorted(written) == sorted(compiler.CONTRACTS)
    fresh = {p.name: p.read_text() for p in (tmp_path / "build").glob("*.json")}
    committed = {p.name: p.read_text() for p in (ROOT / "build" / "contracts").glob("*.json")}
    # Interfaces, libraries and bases too: brownie compiles again if any one is missing.
    assert sorted(fresh) == sorted(committed), "build/contracts differs from the sources: run `make compile`"
    for name, text in fresh.items():
        assert text == committed[name], "build/contracts is stale: run `make compile` and commit the result"
    for name in compiler.CONTRACTS:
        assert (tmp_path / "pkg" / f"{name}.json").read_text() == (PACKAGE_ARTIFACT_DIR / f"{name}.json").read_text()


def test_brownie_compile_uses_the_same_settings(brownie_compile) -> None:
    project, proc = brownie_compile
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    for name in compiler.CONTRACTS:
        theirs = json.loads((project / "build" / "contracts" / f"{name}.json").read_text())
        ours = json.loads((ROOT / "build" / "contracts" / f"{name}.json").read_text())
        assert theirs["bytecode"] == ours["bytecode"], name
        assert theirs["deployedBytecode"] == ours["deployedBytecode"], name
        assert theirs["abi"] == ours["abi"], name


def test_dr_compile_reports_a_missing_compiler_in_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, SOLC_BINARY=str(tmp_path / "nope"))
    result = subprocess.run([sys.executable, "-m", "demand_response", "compile"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "is not an executable file" in result.stderr
    assert "Traceback" not in result.stderr
