"""Atomic writes: a file or a directory appears complete or not at all, and nothing else is clobbered.

Staging names carry the host and process id (`.NAME.tmp-HOST-PID-XXXX`), so a later write removes
the staging left by a process that was killed mid-write, and never one a live process still writes.
What appears gets the permissions the umask gives, as a plain `open` or `mkdir` would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` in one rename.

    An existing `path` is replaced only when it holds `marker` (a file that marks it as written by
    this library) or is empty; any other existing directory or file raises `FileExistsError`.
    """
    path = Path(path)
    if path.exists() and not _replaceable(path, marker):
        raise FileExistsError(f"{path}: exists and was not written by descore-reward (no {marker}); not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(path, "tmp"), dir=path.parent))
    staging.chmod(0o777 & ~_umask())
    try:
        yield staging
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=_staging_prefix(path, "old"), dir=path.parent))
            os.replace(path, retired / path.name)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _staging_prefix(path: Path, kind: str) -> str:
    return f".{path.name}.{kind}-{socket.gethostname()}-{os.getpid()}-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_staging(path: Path) -> None:
    """Remove what a killed writer of `path` left beside it: staging of this host whose process is gone."""
    host = socket.gethostname()
    for kind in ("tmp", "old"):
        for leftover in path.parent.glob(f".{path.name}.{kind}-{host}-*"):
            pid = leftover.name[len(f".{path.name}.{kind}-{host}-") :].split("-")[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _replaceable(path: Path, marker: str) -> bool:
    return path.is_dir() and ((path / marker).exists() or not any(path.iterdir()))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    handle, temporary = tempfile.mkstemp(prefix=_staging_prefix(path, "tmp"), dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """A staging file name beside `path`, with its extension, for writers that want a name (a video
    encoder, say): renamed onto `path` when the block ends, removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging = path.with_name(f"{_staging_prefix(path, 'tmp')}staging{path.suffix}")
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file beside it and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))
