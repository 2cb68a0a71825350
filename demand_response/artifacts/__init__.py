"""Committed contract artifacts (ABI and bytecode) and small file helpers.

The JSON files beside this module are written by ``dr compile`` and committed, so a
consumer board needs no compiler.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE_ARTIFACT_DIR = Path(__file__).resolve().parent


def atomic_write_text(path: Path | str, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` via a temp file and rename, so readers never see half a file.

    ``mode`` defaults to the usual 0o666 less the umask (0o600 suits secrets). On any
    error the previous file is left as it was and the temp file is removed.
    """
    path = Path(path)
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # e.g. EFBIG/ENOSPC from write(): name the file the user knows, not the temp file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@lru_cache(maxsize=None)
def load_artifact(name: str = "DemandReduction") -> dict[str, Any]:
    """The committed ABI/bytecode artifact of contract ``name``."""
    path = PACKAGE_ARTIFACT_DIR / f"{name}.json"
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
