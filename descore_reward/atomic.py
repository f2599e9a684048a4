"""Atomic writes: a file or a directory appears complete or not at all, and nothing else is clobbered;
a row of an append-only JSONL log (`append_jsonl`) likewise.

Staging names carry the host and process id (`.NAME.tmp-HOST-PID-XXXX`), so a later write removes
the staging left by a process that was killed mid-write, and never one a live process still writes.
What appears gets the permissions the umask gives, as a plain `open` or `mkdir` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputFolderError


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
        _follow_umask(staging)
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


def _follow_umask(folder: Path) -> None:
    """Give everything written under `folder` the permissions the umask gives a new file or folder: some
    writers (safetensors) create their files 0600, which other users could not read."""
    mask = _umask()
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


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
        os.chmod(staging, 0o666 & ~_umask())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file beside it and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def append_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append `rows` to the JSONL log `path`, one line each, flushed to disk before returning. A last
    line torn by a kill mid-write is cut off first, so every line of the log is a whole row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as file:
        file.truncate(_whole_lines_length(file))
        file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
        file.flush()
        os.fsync(file.fileno())


def _whole_lines_length(file, block: int = 65536) -> int:
    """The length of an open file up to and including its last newline (0 when it has none), read
    backwards a block at a time: what is left of it once a torn last line is cut off."""
    position = file.seek(0, os.SEEK_END)
    while position > 0:
        start = max(0, position - block)
        file.seek(start)
        cut = file.read(position - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        position = start
    return 0


def read_jsonl_log(path: str | os.PathLike) -> list[dict]:
    """The rows of a log written by `append_jsonl` (none when it does not exist). A torn last line (a
    kill mid-write) is left out; any other line that is not a JSON object raises `OutputFolderError`
    naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif number < len(lines):  # a complete line (a newline follows it) that is not a row
            raise OutputFolderError(f"{path}:{number}: not a JSON row; this log was not written by descore-reward")
    return rows


LOCK_NAME = ".descore-lock"


def claim_folder(path: str | os.PathLike) -> Path:
    """Make `path` (created if missing) the output folder of this process until `release_folder`: a
    second run on it stops with `OutputFolderError` while the first holds it, and a lock left by a
    process of this host that is gone is taken over. A file where the folder should be, or a folder
    that cannot be written, is named before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{path}: exists and is not a folder; expected an output folder")
    lock = path / LOCK_NAME
    mine = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        path.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                with open(lock, "x", encoding="utf-8") as file:
                    json.dump(mine, file)
                return path
            except FileExistsError:
                holder = _lock_holder(lock)
                if holder is not None and holder != mine and (holder["host"] != mine["host"] or _alive(holder["pid"])):
                    raise OutputFolderError(
                        f"{path}: in use by process {holder['pid']} on {holder['host']} (its {LOCK_NAME}); wait for "
                        f"it to finish or choose another output folder (remove {lock} if that process is gone)"
                    ) from None
                lock.unlink(missing_ok=True)  # ours from an earlier call, or a dead process's: take it over
    except OSError as error:
        raise OutputFolderError(f"{path}: cannot write there ({error.strerror or error})") from None
    raise OutputFolderError(f"{path}: another process keeps taking {lock}; choose another output folder")


def release_folder(path: str | os.PathLike) -> None:
    """Give up the claim of `claim_folder` on `path` (nothing when this process does not hold it)."""
    lock = Path(path) / LOCK_NAME
    if _lock_holder(lock) == {"host": socket.gethostname(), "pid": os.getpid()}:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    valid = isinstance(holder, dict) and isinstance(holder.get("pid"), int) and isinstance(holder.get("host"), str)
    return {"host": holder["host"], "pid": holder["pid"]} if valid else None
