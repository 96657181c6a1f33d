"""Build the installable extension zip: blender_deepfake/*.py + addon_manifest.toml (as
blender_manifest.toml), validated and packed by Blender's own extension tool (`blender_ext.py`,
shipped inside the bpy wheel under scripts/addons_core/bl_pkg/cli/), so the zip is exactly what
Edit > Preferences > Get Extensions > Install from Disk accepts.

    .venv/bin/python scripts/build_addon.py [--out-dir dist]
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blender_deepfake"
MANIFEST = ROOT / "addon_manifest.toml"


def find_blender_ext() -> Path:
    """blender_ext.py inside the installed bpy package (bpy/<version>/scripts/addons_core/bl_pkg/cli)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bpy module is not installed in this environment: pip install bpy")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise SystemExit("blender_ext.py not found in the bpy package")


def run_tool(*args: str | Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(find_blender_ext()), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"blender_ext {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done


def stage(dest: Path) -> Path:
    """A clean source folder: the add-on's Python files and the manifest under its required name."""
    src = dest / "blender_deepfake"
    src.mkdir(parents=True)
    for file in sorted(PACKAGE.glob("*.py")):
        shutil.copy2(file, src / file.name)
    shutil.copy2(MANIFEST, src / "blender_manifest.toml")
    return src


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads(MANIFEST.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="bd-addon-") as tmp:
        src = stage(Path(tmp))
        run_tool("validate", src)
        run_tool("build", "--source-dir", src, "--output-filepath", zip_path)
    run_tool("validate", zip_path)
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    print(build(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
