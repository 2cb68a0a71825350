"""The Debian mirror this machine's apt already uses, for ``make iot-check``'s debootstrap.

The project names no package registry host: the mirror comes from the machine's own apt
sources, ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/*.list`` (one-line format)
and ``*.sources`` (deb822). The first ``deb`` source of a release suite is taken (not
``-security``, ``-updates``, ``-backports``, and not a disabled or cdrom source); its URI is
printed. ``IOT_MIRROR`` overrides it in check.sh.

    python tools/iot/apt_mirror.py [--root /]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

#: Suites that carry only updates on top of a release: debootstrap needs the release itself.
_NOT_A_RELEASE = ("-security", "-updates", "-backports", "-proposed-updates", "/updates")


def _one_line_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of each ``deb`` line of a one-line-format file."""
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]]


def _deb822_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of each enabled ``deb`` stanza of a deb822 ``.sources`` file."""
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
            continue
        suites = stanza.get("suites", "").split()
        for uri in stanza.get("uris", "").split():
            yield uri, suites


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    last = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif raw[0] in " \t" and last is not None:
            fields[last] += " " + raw.strip()
        elif ":" in raw:
            key, value = raw.split(":", 1)
            last = key.strip().lower()
            fields[last] = value.strip()


def sources(root: Path = Path("/")) -> list[tuple[str, list[str]]]:
    """Every (URI, suites) of the machine's ``deb`` sources, in apt's reading order."""
    apt = root / "etc" / "apt"
    found: list[tuple[str, list[str]]] = []
    main = apt / "sources.list"
    if main.is_file():
        found += _one_line_sources(main.read_text(encoding="utf-8", errors="replace"))
    parts = apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += _one_line_sources(path.read_text(encoding="utf-8", errors="replace"))
            elif path.suffix == ".sources":
                found += _deb822_sources(path.read_text(encoding="utf-8", errors="replace"))
    return found


def release_mirror(root: Path = Path("/")) -> str | None:
    """The URI of the first source that carries a release suite, or None."""
    for uri, suites in sources(root):
        if uri.startswith("cdrom:"):
            continue
        if any(not suite.endswith(_NOT_A_RELEASE) for suite in suites):
            return uri.rstrip("/")
    return None


def main(argv: list[str] | None = None) -> int:
    """Print the mirror, or say in one line on stderr that there is none."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/"), help="the file system whose /etc/apt is read")
    args = parser.parse_args(argv)
    mirror = release_mirror(args.root)
    if mirror is None:
        print(f"no Debian release mirror in {args.root / 'etc/apt'}'s sources; set IOT_MIRROR to one",
              file=sys.stderr)
        return 1
    print(mirror)
    return 0


if __name__ == "__main__":
    sys.exit(main())
