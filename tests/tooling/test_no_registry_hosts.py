"""The repository names no package registry host (bug 14): `make iot-check` takes its Debian
mirror from the machine's own apt sources (tools/iot/apt_mirror.py), and no tracked file
spells a Debian mirror, the Python package index or the npm registry.

The host names are built here from parts, so this file does not contain them either."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOT = "."

#: Registry hosts, from parts: Debian and Ubuntu mirrors, the Python package index (and the
#: host of its files), npm's and yarn's registries.
REGISTRY_HOSTS = [
    DOT.join(("deb", "debian", "org")), DOT.join(("ftp", "debian", "org")), DOT.join(("security", "debian", "org")),
    DOT.join(("archive", "ubuntu", "com")), DOT.join(("ports", "ubuntu", "com")),
    DOT.join(("pypi", "org")), DOT.join(("pypi", "python", "org")), DOT.join(("files", "pythonhosted", "org")),
    DOT.join(("registry", "npmjs", "org")), DOT.join(("registry", "npmjs", "com")),
    DOT.join(("registry", "yarnpkg", "com")),
]
#: Any country mirror of Debian as well (ftp, deb or http, then a country code, then the domain).
DEBIAN_MIRROR = re.compile(r"\b(?:ftp|deb|http)\.[a-z]{2}\." + re.escape(DOT.join(("debian", "org"))), re.I)


def _apt_mirror():
    spec = importlib.util.spec_from_file_location("_dr_iot_apt_mirror", ROOT / "tools" / "iot" / "apt_mirror.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tracked_files() -> list[Path]:
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_no_tracked_file_names_a_package_registry_host() -> None:
    hosts = [h.encode() for h in REGISTRY_HOSTS]
    found = []
    for path in _tracked_files():
        if not path.is_file():
            continue
        data = path.read_bytes().lower()
        found += [f"{path.relative_to(ROOT)}: {h.decode()}" for h in hosts if h in data]
        if DEBIAN_MIRROR.search(data.decode("utf-8", "replace")):
            found.append(f"{path.relative_to(ROOT)}: a Debian country mirror")
    assert found == []


def test_the_host_list_catches_what_it_is_meant_to_catch() -> None:
    assert all(h.count(".") >= 1 and h == h.lower() for h in REGISTRY_HOSTS)
    assert DEBIAN_MIRROR.search("http://" + DOT.join(("ftp", "de", "debian", "org")) + "/debian")
    assert not DEBIAN_MIRROR.search("wiki." + DOT.join(("debian", "org")))


MIRROR = "http://mirror.example.net/debian"


def _etc(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "etc" / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_mirror_comes_from_a_deb822_sources_file(tmp_path: Path) -> None:
    root = _etc(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\n# a comment inside the stanza\nURIs: http://mirror.example.net/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        f"Types: deb-src deb\nURIs: {MIRROR}/\nSuites: bookworm bookworm-updates\nComponents: main\n"),
        "sources.list.d/other.list.disabled-by-admin": "deb http://elsewhere.example.net/x bookworm main\n"})
    assert _apt_mirror().release_mirror(root) == MIRROR


def test_the_mirror_comes_from_a_one_line_sources_list_with_options(tmp_path: Path) -> None:
    root = _etc(tmp_path, {"sources.list": (
        "# deb http://commented.example.net/debian bookworm main\n"
        "deb-src http://src.example.net/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://sec.example.net/debian bookworm-security main\n"
        f"deb [ arch=amd64 ] {MIRROR} bookworm main contrib\n")})
    assert _apt_mirror().release_mirror(root) == MIRROR


def test_disabled_and_cdrom_sources_are_skipped_and_none_is_one_line(tmp_path: Path, capsys) -> None:
    root = _etc(tmp_path, {"sources.list": "deb cdrom:[Debian 12]/ bookworm main\n",
                           "sources.list.d/off.sources": f"Types: deb\nURIs: {MIRROR}\nSuites: bookworm\nEnabled: no\n"})
    module = _apt_mirror()
    assert module.release_mirror(root) is None
    assert module.main(["--root", str(root)]) == 1
    assert capsys.readouterr().err.strip().endswith("set IOT_MIRROR to one")


def test_check_sh_reads_the_mirror_from_apt_and_lets_iot_mirror_override_it() -> None:
    script = (ROOT / "tools" / "iot" / "check.sh").read_text()
    assert 'MIRROR=${IOT_MIRROR:-}' in script and "tools/iot/apt_mirror.py" in script
    assert re.search(r"https?://[^\s\"']*debian", script) is None
