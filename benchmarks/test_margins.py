"""The spread, across seeds and thread counts, of the figures the training tests bound: what
their margins are derived from (tests/test_train.py, tests/test_evaluate.py).

    .venv/bin/python benchmarks/test_margins.py FACESET_A FACESET_B
Prints one row per (seed, threads): loss ratio after 150 iterations, held-out SSIM gain over the
untrained model at 150 (batch 8) and at 60 iterations (the small_model fixture), PSNR gain at 60.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys
from pathlib import Path
import torch
from core.events import Events
from core.model import PRESETS, build_model, load_model
from core.losses import rebuild_ssim
from core.train import TrainSettings, train
from core.train_data import load_identity
from core.evaluate import evaluate_model
a, b, seed, out = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
q = Events(jsonl=True, out=open(os.devnull, "w"))
row = {}
for its in (60, 150):
    m = out / f"m{its}"
    train(TrainSettings(facesets_a=[a], facesets_b=[b], model_dir=m, iterations=its, batch_size=8, device="cpu",
                        seed=seed, holdout=0.2, save_every=10**6, preview_every=10**6), q)
    losses = json.loads((m / "state.json").read_text())["losses"]
    row[f"loss_ratio_{its}"] = round(min(losses[-1][1] / losses[0][1], losses[-1][2] / losses[0][2]), 3)
    r = evaluate_model(m, [a], [b], q)
    for k in ("a", "b"):
        i = r["identities"][k]
        row[f"ssim_gain_{its}_{k}"] = round(i["ssim"] - i["control_ssim"], 3)
        row[f"psnr_gain_{its}_{k}"] = round(i["psnr"] - i["control_psnr"], 2)
print(json.dumps(row))
"""

a, b = sys.argv[1], sys.argv[2]
for seed in (3, 7, 11):
    for threads in ("1", "2"):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "OMP_NUM_THREADS": threads}
            done = subprocess.run([sys.executable, "-c", CHILD, a, b, str(seed), tmp], env=env, capture_output=True,
                                  text=True, cwd=Path(__file__).resolve().parents[1])
            print(json.dumps({"seed": seed, "threads": threads, **(json.loads(done.stdout.strip().splitlines()[-1])
                              if done.returncode == 0 else {"error": done.stderr[-300:]})}), flush=True)
