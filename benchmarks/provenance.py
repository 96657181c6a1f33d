"""What provenance labels cost: a 216-frame swap of liveportrait_d18 to mp4 and to PNG, with the
labels (the default) and with --no-label, and the labelling work timed on its own.

    .venv/bin/python benchmarks/provenance.py --out runs/provenance [--model DIR] [--repeats 2]

End to end: each configuration is swapped `--repeats` times, interleaved (labelled, unlabelled,
labelled, ...) so a busy machine slows both alike; the table gives the median wall seconds of
each and the difference. Direct: the same labelling calls the swap makes, on the unlabelled
run's 216 PNG frames and movie (plain label + C2PA signature per PNG; tags + signature for the
movie), so the cost is measured without the swap's own noise. Prints peak memory (RSS) of the
direct part. The model is the chunk benchmark's small one (trained once, or --model).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from chunks import D18, FRAMES, small_model  # noqa: E402


def swap(out: Path, model: Path, fmt: str, labelled: bool) -> float:
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "core", "swap", str(D18), "--model", str(model), "--out", str(out),
               "--format", fmt, "--count", str(FRAMES), "--aligner", "dlib", "--events", "jsonl"]
    t0 = time.perf_counter()
    subprocess.run(command + ([] if labelled else ["--no-label"]), cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def direct(frames: Path, movie: Path, work: Path) -> dict[str, float]:
    from core.provenance import LabelSettings, Labeller, sequence

    t0 = time.perf_counter()
    labeller = Labeller(LabelSettings(), D18, "benchmark")
    setup = time.perf_counter() - t0
    pngs = sorted(frames.glob("frame_*.png"))
    data = [p.read_bytes() for p in pngs]
    t0 = time.perf_counter()
    signed = [labeller.png(d, p.name) for d, p in zip(data, pngs)]
    png_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sequence.update(frames, sequence.digests(pngs), labeller.values, labeller.signer_record())
    sidecar_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    labeller.sign_movie(movie, work / "signed.mp4", movie.name)
    movie_s = time.perf_counter() - t0
    added = sum(len(s) - len(d) for s, d in zip(signed, data)) / len(data)
    return {"setup_s": setup, "png_s": png_s, "sidecar_s": sidecar_s, "movie_s": movie_s,
            "png_bytes_added": added, "movie_bytes_added": (work / "signed.mp4").stat().st_size - movie.stat().st_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DEEPFAKE_CREDENTIALS", str(args.out / "credentials"))  # not the user's
    model = args.model or small_model(args.out)
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):
        for fmt in ("mp4", "png"):
            for labelled in (True, False):
                out = args.out / (f"{fmt}_{'labelled' if labelled else 'plain'}" + (".mp4" if fmt == "mp4" else ""))
                times.setdefault((fmt, labelled), []).append(swap(out, model, fmt, labelled))
    print(f"| {FRAMES}-frame swap of d18 | labelled s | --no-label s | added s | added % |")
    print("|---|---|---|---|---|")
    for fmt in ("mp4", "png"):
        on, off = statistics.median(times[fmt, True]), statistics.median(times[fmt, False])
        print(f"| {fmt} | {on:.1f} | {off:.1f} | {on - off:+.1f} | {100 * (on - off) / off:+.1f} |")
    d = direct(args.out / "png_plain", args.out / "mp4_plain.mp4", args.out)
    print(f"\ndirect: credentials and signer {d['setup_s']:.3f} s; {FRAMES} PNG frames labelled and signed "
          f"{d['png_s']:.2f} s ({1000 * d['png_s'] / FRAMES:.1f} ms/frame, +{d['png_bytes_added']:.0f} bytes each); "
          f"sidecar {d['sidecar_s']:.2f} s; the movie signed {d['movie_s']:.2f} s (+{d['movie_bytes_added']} bytes)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (this process: the direct part)")


if __name__ == "__main__":
    main()
