"""Atomic file replacement: readers (and a rerun after a kill) see the old file or the new one,
never a torn one. Used for everything the project writes that a later run trusts."""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, data: bytes | Callable[[Path], None], durable: bool = True) -> None:
    """Write `data` (or call `data(tmp)` to write the temp file) beside `path`, then rename it
    over `path`. `durable` also fsyncs the file and the folder, so a power cut keeps the old or
    the new file; frequent small files (face crops) skip it, since a killed process loses
    nothing that the page cache holds."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # Created by us first so it gets the umask's mode, not the 0600 that mkstemp and
        # safetensors' own temp files give: a shared folder (a render farm) must be readable.
        with open(tmp, "xb") as f:
            if isinstance(data, bytes):
                f.write(data)
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        if not isinstance(data, bytes):
            data(tmp)
            os.chmod(tmp, mode)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename itself durable; not possible (nor needed) on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
