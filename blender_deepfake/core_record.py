"""The record that lets the add-on find a core without the user typing a path.

`scripts/setup.sh` writes it once the core's environment is installed; the add-on's preferences
read it when "Core Python" is empty. It lives in the user's configuration folder rather than in
Blender's, because the setup runs before (and without) Blender and one record serves every
Blender version the user has; and it holds plain JSON (no code runs when it is read).

    Linux:   $XDG_CONFIG_HOME/blender-deepfake/core.json (default ~/.config/...)
    macOS:   ~/Library/Application Support/blender-deepfake/core.json
    Windows: %APPDATA%\\blender-deepfake\\core.json
    DEEPFAKE_CORE_RECORD overrides the path (tests, several installs side by side).

This module imports neither bpy nor core: the setup runs it as a script with the core's own
interpreter (`python blender_deepfake/core_record.py write ...`), the add-on imports it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

RECORD_ENV = "DEEPFAKE_CORE_RECORD"
FORMAT = 1
SETUP_COMMAND = "bash scripts/setup.sh"
"""What sets the core up, run in the blender-deepfake folder (the clone or the source zip)."""


@dataclass(frozen=True)
class CoreRecord:
    python: str          # the core environment's interpreter
    project: str         # the folder setup.sh ran in (its scripts/setup.sh repairs the core)
    torch_build: str     # cuda | cpu | default (macOS: the PyPI build, with MPS)
    reason: str          # why setup chose that build
    written: str = ""    # ISO time, UTC

    def setup_command(self) -> str:
        return f"bash {Path(self.project) / 'scripts' / 'setup.sh'}"


def record_path() -> Path:
    override = os.environ.get(RECORD_ENV)
    if override:
        return Path(override)
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "blender-deepfake" / "core.json"


class RecordError(ValueError):
    """A record that exists but cannot be used: the message says what to run."""


def read_record(path: Path | None = None) -> CoreRecord | None:
    """The record, or None when setup never ran; RecordError when it is unreadable."""
    path = path or record_path()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        return CoreRecord(python=str(data["python"]), project=str(data["project"]),
                          torch_build=str(data["torch_build"]), reason=str(data.get("reason", "")),
                          written=str(data.get("written", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"the core record {path} is unreadable ({exc}): run `{SETUP_COMMAND}` "
                          "in the blender-deepfake folder again") from exc


def write_record(record: CoreRecord, path: Path | None = None) -> Path:
    """Atomically (a half-written record must not break the add-on)."""
    path = path or record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, **asdict(record)}
    if not data["written"]:
        data["written"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fd, tmp = tempfile.mkstemp(prefix=".core.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the record the Blender add-on finds the core by.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--python", required=True)
    w.add_argument("--project", required=True)
    w.add_argument("--torch-build", required=True, choices=["cuda", "cpu", "default"])
    w.add_argument("--reason", default="")
    sub.add_parser("path")
    args = parser.parse_args(argv)
    if args.cmd == "path":
        print(record_path())
        return 0
    record = CoreRecord(python=str(Path(args.python).absolute()), project=str(Path(args.project).resolve()),
                        torch_build=args.torch_build, reason=args.reason)
    print(write_record(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
