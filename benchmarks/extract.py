"""Extraction throughput and peak memory on real clips of three sizes.

Usage: .venv/bin/python benchmarks/extract.py [--aligner dlib|fan] [--device cpu|cuda] [CLIP ...]
Each clip runs in a fresh child process so that its peak RSS is its own. Prints, per clip:
end-to-end frames/s (model loading included), steady frames/s (after the first batch) and
peak RSS. Decoding, detection, landmarks, warping and PNG writing are all inside the figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "faces" / "video"
CLIPS = ["liveportrait_d18.mp4", "liveportrait_s18.mp4", "facenet_pytorch_video.mp4"]


def run_one(clip: Path, aligner: str, device: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from core.events import Events
    from core.extract import ExtractSettings, extract

    class Timing(Events):
        first_batch: tuple[float, int] | None = None

        def progress(self, step: str, done: int, total: int, **extra) -> None:
            if self.first_batch is None:
                self.first_batch = (time.perf_counter(), done)
            self.last = (time.perf_counter(), done)

    events = Timing(jsonl=True, out=open("/dev/null", "w"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = extract(clip, Path(tmp) / "fs", ExtractSettings(aligner=aligner, device=device), events)
        total_s = time.perf_counter() - t0
    (t1, d1), (t2, d2) = events.first_batch, events.last
    return {"clip": clip.name, "frames": summary["frames"], "faces": summary["faces"],
            "fps_end_to_end": summary["frames"] / total_s, "fps_steady": (d2 - d1) / (t2 - t1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clips", nargs="*", default=[str(VIDEO / c) for c in CLIPS])
    parser.add_argument("--aligner", default="dlib")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.clips[0]), args.aligner, args.device)))
        return
    print(f"extract benchmark: aligner={args.aligner} device={args.device}")
    print(f"{'clip':34} {'size':>10} {'frames':>6} {'faces':>6} {'fps e2e':>8} {'fps steady':>10} {'peak RSS MB':>11}")
    import av

    for clip in args.clips:
        with av.open(clip) as c:
            size = f"{c.streams.video[0].width}x{c.streams.video[0].height}"
        out = subprocess.run([sys.executable, __file__, "--one", "--aligner", args.aligner, "--device", args.device, clip],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['clip']:34} {size:>10} {r['frames']:6d} {r['faces']:6d} {r['fps_end_to_end']:8.1f} "
              f"{r['fps_steady']:10.1f} {r['peak_rss_mb']:11.0f}", flush=True)


if __name__ == "__main__":
    main()
