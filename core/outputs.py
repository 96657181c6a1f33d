"""Guards around every folder a step writes: one writer at a time, leftovers of killed jobs
removed, writability and free space checked before the work starts, a full disk reported once.

Why a lock file with an OS lock (flock / msvcrt) rather than a PID file: the kernel drops the
lock when its process dies, kill -9 included, so a stale lock never blocks a rerun, and a second
job on the same output or model is refused at once instead of racing the first. Whoever holds the
lock knows that every temporary file in the folder belongs to a job that is gone, so it removes
them: that is how the leftovers that no exit path of a killed job can clean go away.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import time
from collections.abc import Collection
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from core.errors import DeepfakeError

LOCK_NAME = ".deepfake.lock"
# Temporary files our writers leave behind when killed: core.atomic's `.NAME.HEX.tmp`,
# safetensors' own NamedTempFile (`.tmpXXXXXX`) and core.sinks' `.NAME.HEX.partial.mp4`.
_TEMP = re.compile(r"^\.(.+\.[0-9a-f]{12}\.tmp|tmp[A-Za-z0-9]{6}|.+\.[0-9a-f]{12}\.partial\.mp4)$")
_TEMP_TARGET = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.(?:tmp|partial\.mp4)$")  # safetensors' .tmpXXXXXX names none


class BusyError(DeepfakeError):
    """Another job is writing the same output or model."""


class DiskFullError(DeepfakeError):
    """The disk filled up (or the quota ran out) while writing."""


def _try_lock(handle: IO[bytes]) -> bool:
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


@contextmanager
def exclusive(lock_path: Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold `lock_path` for the duration; refuse (BusyError) when another job holds it, at once or
    after `wait` seconds. A wait is for the short sections that chunks of one shot take in turn
    (a record update): a job holding a lock for its whole run is refused at once.

    `what` names the thing in the message ("the model in /x"). The lock file itself stays: it
    is empty, hidden, and deleting it while held would let a third job lock a new inode.
    """
    lock_path = Path(lock_path)
    ensure_writable(lock_path.parent)
    handle = open(lock_path, "a+b")
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(handle):
            if time.monotonic() >= deadline:
                raise BusyError(f"another job is writing {what} (it holds {lock_path}); wait for it to finish or cancel it")
            time.sleep(0.05)
        yield
    finally:
        handle.close()  # closing releases the lock on every platform


def folder_lock(folder: Path, what: str, wait: float = 0.0):
    """The lock of a folder a step owns (a faceset, a model, a swap's records)."""
    return exclusive(Path(folder) / LOCK_NAME, what, wait)


def file_lock(path: Path, what: str, wait: float = 0.0):
    """The lock of a single output file (an mp4, a render's provenance sidecar): a hidden file beside it."""
    path = Path(path)
    return exclusive(path.with_name(f".{path.name}.lock"), what, wait)


def temp_target(name: str) -> str | None:
    """The file a temporary file of ours was to become (`.frame_000050.png.0a1b2c3d4e5f.tmp` ->
    `frame_000050.png`), or None when `name` is not one of our temporary files."""
    m = _TEMP_TARGET.match(name)
    return m.group(1) if m else None


def remove_stale_temps(folder: Path, stem: str | None = None, targets: Collection[str] | None = None) -> int:
    """Remove our writers' temporary files in `folder` (only those of `stem`, or only those that
    were to become one of `targets`, when given); call it only while holding the lock of what
    they belong to. Returns how many went."""
    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not _TEMP.match(entry.name) or (stem is not None and not entry.name.startswith(f".{stem}.")):
            continue
        if targets is not None and temp_target(entry.name) not in targets:
            continue
        if entry.is_file():
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def ensure_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be made there, now rather than after an hour."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".deepfake-write-test-{os.getpid()}"
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise DeepfakeError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def ensure_free_space(folder: Path, need_bytes: int, what: str) -> None:
    """Refuse to start when the disk holding `folder` has clearly too little room for `what`.
    The estimate is rough by nature (compression varies); it catches the hopeless cases."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need_bytes:
        raise DiskFullError(f"not enough free space for {what} in {folder}: about {_size(need_bytes)} needed, "
                            f"{_size(free)} free")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: OSError, what: str, kept: str) -> DiskFullError:
    """The one error a full disk becomes; `kept` says what is still usable and how to go on."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return DiskFullError(f"the disk filled up while writing {what}{where}; {kept}")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
