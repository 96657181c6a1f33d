"""Headless Extract / Train / Swap / render with the add-on, from a shell or a render farm.

    blender -b shot.blend --python scripts/deepfake_batch.py -- swap --strip "A" --model DIR --render out.mp4
    .venv/bin/python scripts/deepfake_batch.py shot.blend swap --strip "A" --model DIR --render out.mp4
    .venv/bin/python scripts/deepfake_batch.py demo CLIP_A CLIP_B --out out --iterations 300

Inside a Blender binary the arguments come after `--` and the .blend is already open; with the
`bpy` module the first argument may name the .blend to open. The add-on is this checkout's
`blender_deepfake` (an installed copy of the extension works the same: see blender_deepfake/batch.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import bpy

    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    if argv and argv[0].endswith(".blend"):
        blend = Path(argv.pop(0))
        if not blend.is_file():
            print(f"error: no such .blend: {blend}", file=sys.stderr)
            return 1
        try:
            bpy.ops.wm.open_mainfile(filepath=str(blend.absolute()))
        except RuntimeError as exc:  # not a .blend, a newer Blender's, truncated
            reason = " ".join(str(exc).split()).removeprefix("Error: ")
            print(f"error: cannot open {blend}: {reason}", file=sys.stderr)
            return 1
    sys.path.insert(0, str(ROOT))
    from blender_deepfake import batch

    return batch.main(argv)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.exit(code)
