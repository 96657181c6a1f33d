"""Training throughput per preset: samples/s (batch x 2 identities x iterations/s, the figure
faceswap users quote as EGs/sec), peak memory, and on CUDA the share of the GPU's peak bf16 rate.

Usage: .venv/bin/python benchmarks/train.py [--device cpu|cuda] [--presets small,standard,large]
       [--iterations N] [--batch-size N] [--peak-tflops T] [--variants v1/df,v2/liae]
A variant is RECIPE/LAYOUT (core.recipe.RECIPES, df or liae); several are measured in one run,
so their ratio is the comparison (the machines are noisy).
Runs the real training step (sampling, GPU/CPU augmentation, autocast on CUDA, Adam) on faces of
liveportrait_d18 / d19 (extracted once into a temporary folder), one preset per child process so
each peak memory is its own. FLOPs per sample are counted with torch's FlopCounterMode over one
forward + backward pass.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIDEO = ROOT.parent / "shared" / "faces" / "video"
CPU_BATCH = {"small": 16, "standard": 8, "large": 4}
# Dense bf16 tensor-core peaks (TFLOPS) of the cards we may be lent; --peak-tflops overrides.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def run_one(preset: str, device: str, iterations: int, batch: int, facesets: list[str], variant: str) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.events import Events
    from core.recipe import RECIPES
    from core.train import TrainSettings, Trainer

    recipe, layout = variant.split("/")

    model_dir = Path(tempfile.mkdtemp(prefix=f"bd-bench-{preset}-"))
    settings = TrainSettings(facesets_a=[Path(facesets[0])], facesets_b=[Path(facesets[1])], model_dir=model_dir,
                             preset=preset, iterations=10**9, batch_size=batch or None, device=device,
                             save_every=10**9, preview_every=10**9, recipe=RECIPES[recipe], layout=layout)
    trainer = Trainer(settings, Events(jsonl=True, out=open(os.devnull, "w")))
    batch = trainer.state.batch_size
    with FlopCounterMode(display=False) as counter:
        trainer._step(batch, dry_run=True)
    flops_per_sample = counter.get_total_flops() / (2 * batch)
    for _ in range(2):  # warm-up: allocator, cuDNN autotuning
        trainer._step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iterations):
        loss_a, _ = trainer._step(batch)
    float(loss_a)  # wait for the queued work
    seconds = time.perf_counter() - t0
    samples_per_s = iterations * batch * 2 / seconds
    result = {"variant": variant, "preset": preset, "resolution": trainer.config.resolution, "batch": batch, "device": str(trainer.device),
              "it_per_s": iterations / seconds, "samples_per_s": samples_per_s,
              "gflops_per_sample": flops_per_sample / 1e9,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if trainer.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(trainer.device)
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["amp"] = str(trainer.amp_dtype)
        result["achieved_tflops"] = flops_per_sample * samples_per_s / 1e12
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", default="small,standard,large")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations (default: 10 on CPU, 50 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=0, help="per identity (default: CPU table / largest that fits on CUDA)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--facesets", default=None, help="A,B faceset folders (default: extract 64 frames of d18 / d19)")
    parser.add_argument("--variants", default="v2/liae", help="RECIPE/LAYOUT, comma-separated (default: v2/liae)")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        preset, facesets = args.one[0], args.one[1].split(",")
        batch = args.batch_size or (CPU_BATCH[preset] if args.device == "cpu" else 0)
        print(json.dumps(run_one(preset, args.device, args.iterations, batch, facesets, args.one[2])))
        return
    iterations = args.iterations or (10 if args.device == "cpu" else 50)
    work = Path(tempfile.mkdtemp(prefix="bd-bench-"))
    facesets = args.facesets.split(",") if args.facesets else []
    for clip in () if facesets else ("liveportrait_d18.mp4", "liveportrait_d19.mp4"):
        out = work / clip.split(".")[0]
        subprocess.run([sys.executable, "-m", "core", "extract", str(VIDEO / clip), "--out", str(out), "--count", "64",
                        "--aligner", "dlib"], cwd=ROOT, check=True, capture_output=True)
        facesets.append(str(out))
    print(f"train benchmark on {args.device}, {iterations} timed iterations per preset")
    for preset, variant in ((p, v) for p in args.presets.split(",") for v in args.variants.split(",")):
        cmd = [sys.executable, __file__, "--device", args.device, "--iterations", str(iterations),
               "--batch-size", str(args.batch_size), "--one", preset, ",".join(facesets), variant]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{variant} {preset}: failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        line = (f"{r['variant']:8} {r['preset']:8} {r['resolution']:3d} px  batch {r['batch']:3d}+{r['batch']:<3d} {r['it_per_s']:7.2f} it/s "
                f"{r['samples_per_s']:8.1f} samples/s  {r['gflops_per_sample']:7.2f} GFLOP/sample  peak RSS {r['peak_rss_mb']:.0f} MB")
        if "gpu" in r:
            peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in r["gpu"]), None)
            share = f"{100 * r['achieved_tflops'] / peak:.1f} % of {peak:.0f} TFLOPS bf16" if peak else "peak unknown"
            line += f"  peak GPU {r['peak_gpu_mb']:.0f} MB  {r['amp']}  {r['achieved_tflops']:.1f} TFLOPS ({share}) on {r['gpu']}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
