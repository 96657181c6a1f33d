"""Convergence of a training recipe on a pair, judged on held-out frames against controls.

    .venv/bin/python benchmarks/convergence.py --pair d18 --iterations 3000 --every 500 --out runs/d18_default
    .venv/bin/python benchmarks/convergence.py --pair hdtf --recipe v1 --layout df --out runs/hdtf_v1
    .venv/bin/python benchmarks/convergence.py --pair d18 --set eye_mouth_priority=30 --set augment.warp=0.12 --out runs/x

Pairs: d18 = liveportrait d18 (A, the footage) -> d19 (B); hdtf = AlexandriaOcasioCortez -> KatieHill.
The last 20 % of each clip's frames are held out of training (`--holdout 0.2`, by time). Every
`--every` iterations the model is measured on A's held-out frames swapped a2b (re-detected as
`deepfake evaluate` does): mouth- and eye-opening correlation with the source, landmark error (share
of the inter-ocular distance), descriptor distance to B beside the mean-face control's, identity
retrieval, detail kept (beside the resolution control's: the source's face through the model's
resolution, a perfect model of that size); the same figures for A's held-out frames rebuilt A->A (the model with B's
decoder replaced by A's own: what it can carry, against which the swap's figures show how much of
it reaches B); B's own held-out frames rebuilt by B's decoder, their distance to B beside B's
mean face pasted there (what B's decoder can paint, against which the swap's distance shows how
much A's code reaches); and rebuild SSIM / PSNR of both identities' held-out faces against the untrained
model. Iterations, wall seconds and training samples/s go with every row, so recipes are
compared at equal iterations and at equal wall time, in one run on one machine.

Writes OUT/convergence.json (rows) and OUT/convergence.png (curves), and prints one row per line.
A rerun with the same OUT resumes the training and re-measures nothing already measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIDEO = ROOT.parent / "shared" / "faces" / "video"
PAIRS = {"d18": ("liveportrait_d18.mp4", "liveportrait_d19.mp4"),
         "hdtf": ("hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "hdtf_WDA_KatieHill_000.mp4")}
HOLDOUT = 0.2


def quiet():
    from core.events import Events

    return Events(jsonl=True, out=open(os.devnull, "w"))


def faceset(clip: Path, out: Path) -> Path:
    from core.extract import ExtractSettings, extract

    if not (out / "alignments.json").is_file() or not json.loads((out / "alignments.json").read_text()).get("complete"):
        extract(clip, out, ExtractSettings(aligner="dlib"), quiet())
    return out


def held_out_range(clip: Path) -> tuple[int, int]:
    from core.media import open_source

    with open_source(clip) as source:
        n = source.info.frame_count
    first = n - int(round(HOLDOUT * n))
    return first, n - first


def rebuild_model(model: Path, out: Path) -> Path:
    """A copy of the model whose B side is A's own (DF: decoder a as decoder b; LIAE: the shared
    inter block as B's): its a2b swap is A rebuilt, composited and measured like a swap."""
    import shutil

    from core.model import load_model, save_model

    net, config, _, metadata = load_model(model)
    if config.layout == "df":
        net.decoders["b"].load_state_dict(net.decoders["a"].state_dict())
    else:
        net.inter["b"].load_state_dict(net.inter["ab"].state_dict())
    save_model(out, net, config, metadata={"state": metadata["state"]})
    shutil.copy(model / "state.json", out / "state.json")
    return out


def swap_and_evaluate(model: Path, clip: Path, fs_a: Path, fs_b: Path, swapped: Path) -> dict:
    """The clip's held-out frames swapped a2b and evaluated. On B's own clip that is B rebuilt by
    its own decoder (the encoder is shared), judged like a swap against B's mean face there."""
    from core.evaluate import EvaluateSettings, evaluate_clip
    from core.swap import SwapSettings, swap

    start, count = held_out_range(clip)
    # preroll=0: the held-out frames start cold, as every table of docs/TRAINING.md measured them
    swap(clip, model, swapped, SwapSettings(start=start, count=count, aligner="dlib", device="cpu", preroll=0,
                                            existing="replace"), quiet())
    return evaluate_clip(clip, swapped, fs_a, fs_b, EvaluateSettings(start=start, count=count), quiet())["summary"]


def measure(model: Path, clip_a: Path, clip_b: Path, fs_a: Path, fs_b: Path, work: Path, iteration: int,
            rebuild_only: bool = False) -> dict:
    from core.evaluate import evaluate_model

    if rebuild_only:
        return rebuild_figures(evaluate_model(model, [fs_a], [fs_b], quiet()))
    s = swap_and_evaluate(model, clip_a, fs_a, fs_b, work / f"swap_{iteration:06d}")
    r = swap_and_evaluate(rebuild_model(model, work / "rebuild_model"), clip_a, fs_a, fs_b, work / "rebuild")
    row = {f"{k}_{v}": s[k][v] for k in ("mouth_correlation", "eye_correlation", "landmark_error", "landmark_offset",
                                         "landmark_tracking", "head_turn", "identity_distance_target",
                                         "identity_retrieval", "detail")
           for v in ("swap", "control", "resolution") if v in s[k]}
    row["head_turn_source"] = s["head_turn"]["source"]  # the swap's should be the source's
    row |= {f"{k}_rebuild": r[k]["swap"] for k in ("mouth_correlation", "eye_correlation", "landmark_error",
                                                   "landmark_offset", "landmark_tracking", "head_turn", "detail")}
    # B's identity as B's decoder paints it from B's own code: beside the swap's (A's code), it
    # tells what the decoder cannot render (capacity) from what A's code does not reach (alignment).
    own_b = swap_and_evaluate(model, clip_b, fs_a, fs_b, work / "rebuild_b")["identity_distance_target"]
    row |= {"identity_distance_b_rebuild": own_b["swap"], "identity_distance_b_rebuild_control": own_b["control"]}
    row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}  # NaN: not measured
    return row | rebuild_figures(evaluate_model(model, [fs_a], [fs_b], quiet()))


def rebuild_figures(rebuild: dict) -> dict:
    row = {}
    for identity in ("a", "b"):
        m = rebuild["identities"][identity]
        row[f"ssim_{identity}"], row[f"ssim_{identity}_untrained"] = m["ssim"], m["control_ssim"]
        row[f"psnr_{identity}"] = m["psnr"]
    return row


def make_recipe(name: str, overrides: list[str]):
    """A named recipe with KEY=VALUE overrides (the name records them, for the plot and the JSON)."""
    import dataclasses

    from core.recipe import RECIPES

    recipe = RECIPES[name]
    for item in overrides:
        key, _, text = item.partition("=")
        target = recipe.augment if key.startswith("augment.") else recipe
        field = key.removeprefix("augment.")
        kind = type(getattr(target, field))
        value = tuple(float(v) for v in text.split(",")) if kind is tuple else (text == "true" if kind is bool else kind(text))
        changed = dataclasses.replace(target, **{field: value})
        recipe = dataclasses.replace(recipe, augment=changed) if target is recipe.augment else changed
    return dataclasses.replace(recipe, name=" ".join([name, *overrides])) if overrides else recipe


def plot(rows: list[dict], path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:  # the GPU machine: the JSON is the record
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = (("mouth / eye correlation", ("mouth_correlation_swap", "mouth_correlation_control",
                                           "mouth_correlation_rebuild", "eye_correlation_swap")),
              ("distance to B (lower is B)", ("identity_distance_target_swap", "identity_distance_target_control",
                                              "identity_distance_b_rebuild")),
              ("landmark error / IOD", ("landmark_error_swap", "landmark_offset_swap", "landmark_tracking_swap",
                                        "landmark_error_control")),
              ("held-out rebuild SSIM", ("ssim_a", "ssim_b", "ssim_a_untrained")))
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(its, [r.get(key, float("nan")) for r in rows], marker="o", label=key.replace("_", " "))
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", choices=sorted(PAIRS), default="d18")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default=None, help="a named recipe (core.recipe.RECIPES) to start from (default: the trainer's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. eye_mouth_priority=30, betas=0.9,0.999, augment.warp=0.12")
    p.add_argument("--layout", default=None, help="df or liae (default: the trainer's, or the --init model's)")
    p.add_argument("--init", type=Path, default=None, help="start from this pretrained model (benchmarks/pretrain.py)")
    p.add_argument("--reset", default="none", help="what of --init starts anew: none or bottleneck")
    p.add_argument("--device", default="cpu", help="cpu or cuda (training; swaps for the clip figures run on the CPU)")
    p.add_argument("--minutes", type=float, default=None, help="stop after the row that passes this much training time")
    p.add_argument("--rebuild-only", action="store_true",
                   help="held-out rebuild SSIM only, no swaps (a machine without PyAV or dlib, e.g. the GPU check); "
                        "needs the facesets already extracted under OUT/../facesets")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import torch

    from core.model import load_config
    from core.recipe import DEFAULT
    from core.train import TrainSettings, train

    recipe = make_recipe(args.recipe or DEFAULT.name, args.set)
    layout = args.layout

    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    clip_a, clip_b = (VIDEO / name for name in PAIRS[args.pair])
    cache = out.parent / "facesets"
    if args.rebuild_only:
        fs_a, fs_b = cache / clip_a.stem, cache / clip_b.stem
    else:
        fs_a, fs_b = faceset(clip_a, cache / clip_a.stem), faceset(clip_b, cache / clip_b.stem)
    model = out / "model"
    record = out / "convergence.json"
    rows = json.loads(record.read_text())["rows"] if record.is_file() else []
    wall = rows[-1]["wall_s"] if rows else 0.0
    for target in range(args.every, args.iterations + 1, args.every):
        if any(r["iteration"] == target for r in rows):
            continue
        t0 = time.monotonic()
        summary = train(TrainSettings(facesets_a=[fs_a], facesets_b=[fs_b], model_dir=model, preset=args.preset,
                                      iterations=target, batch_size=args.batch_size, device=args.device,
                                      seed=args.seed if not rows else None, holdout=HOLDOUT if not rows else None,
                                      recipe=recipe, layout=layout if not rows else None,
                                      init=args.init.absolute() if args.init and not rows else None, reset=args.reset,
                                      save_every=args.every, preview_every=args.every), quiet())
        wall += time.monotonic() - t0
        row = {"iteration": target, "wall_s": round(wall, 1), "samples_per_s": summary["samples_per_s"],
               "threads": torch.get_num_threads(), "device": args.device,
               **measure(model, clip_a, clip_b, fs_a, fs_b, out, target, args.rebuild_only)}
        row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        rows.append(row)
        layout = load_config(model).layout
        record.write_text(json.dumps({"pair": args.pair, "preset": args.preset, "batch_size": args.batch_size,
                                      "holdout": HOLDOUT, "layout": layout, "recipe": recipe.to_json(),
                                      "init": str(args.init) if args.init else None, "reset": args.reset,
                                      "rows": rows}, indent=1) + "\n")
        plot(rows, out / "convergence.png", f"{args.pair} {args.preset} {layout} {recipe.name}{' init' if args.init else ''}")
        print(json.dumps(row), flush=True)
        if args.minutes is not None and wall >= args.minutes * 60:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
