"""Small file helpers every module shares: atomic writes, JSON documents, advisory locks.

A foundation module: it imports nothing of the package. Nothing on disk is ever half
written: every write is a temp file in the same folder, fsynced, then renamed over the
old file, so a reader sees the old document or the new one and a crash loses neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


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


def atomic_write_json(path: Path | str, data: Any, *, indent: int = 1, mode: int | None = None,
                      sort_keys: bool = False) -> None:
    """``data`` as JSON (with a final newline) written atomically; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n", mode=mode)


def read_json(path: Path | str, default: Any = None) -> Any:
    """The JSON document at ``path``, or ``default`` when there is no such file.

    Raises ``ValueError`` (with the file's name) for a file that is not JSON; callers turn
    that into their own one-line error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    if not text.strip():
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


@contextlib.contextmanager
def locked(path: Path | str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the ``with`` block;
    waits for other holders. For serialising writers of one file across processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
