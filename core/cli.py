"""`deepfake` / `python -m core`: the command line every caller uses, the add-on included."""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from core.color_transfers import COLOR_TRANSFERS, DEFAULT_COLOR
from core.device import DEVICES
from core.errors import DeepfakeError
from core.events import Events
from core.network import OFFLINE_ENV, go_offline
from core.outputs import disk_full, is_disk_full


class UsageError(DeepfakeError):
    """A command line argparse refused."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one `error:` line (and one JSON error
    event under --events jsonl) like every other user error, instead of usage plus a message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def number(kind: type, lo: float, hi: float) -> Callable[[str], float]:
    """An argparse type: an int or a finite float in [lo, hi]. Every numeric option has one,
    checked before any work starts, so no value can ask for unbounded memory or time."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is outside {lo:g}..{hi:g}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


FRAME = number(int, 0, 10**8)       # a source frame number
COUNT = number(int, 1, 10**8)       # a number of frames


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C: the step saves what it has and exits."""
    raise KeyboardInterrupt


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto: a CUDA GPU, else an Apple GPU (MPS), else the CPU; the choice is logged")
    p.add_argument("--offline", action="store_true",
                   help="download nothing (face-alignment's weights included): what the add-on passes "
                        f"when Blender's Allow Online Access is off; same as {OFFLINE_ENV}=1")


def _label_options(p: argparse.ArgumentParser, visible: bool = True) -> None:
    from core.provenance.credentials import CERT_ENV, KEY_ENV

    p.add_argument("--no-label", action="store_true",
                   help="write no provenance labels (by default every output says, in Content Credentials and plain "
                        "metadata, that a face in it was replaced); logged as a warning")
    p.add_argument("--c2pa-key", default=None,
                   help=f"your PEM signing key for trusted Content Credentials (default: ${KEY_ENV}, else a local "
                        "certificate made once per user, which verifiers show as not trusted)")
    p.add_argument("--c2pa-cert", default=None,
                   help=f"your PEM certificate chain, signing certificate first (default: ${CERT_ENV})")
    if visible:
        p.add_argument("--visible-label", action="store_true",
                       help="burn a small 'AI-modified' into the lower left corner of every frame (review copies: a "
                            "platform's re-encode strips metadata)")


def _label_settings(args: argparse.Namespace):
    from core.provenance import LabelSettings

    return LabelSettings(enabled=not args.no_label, key=args.c2pa_key, cert=args.c2pa_cert,
                         visible=getattr(args, "visible_label", False))


def _training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    p.add_argument("--save-every", type=number(int, 1, 10**9), default=250)
    p.add_argument("--preview-every", type=number(int, 1, 10**9), default=250)
    p.add_argument("--events", choices=["jsonl"], default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deepfake", description="Face swap for video: extract, train, swap, evaluate.")
    steps = parser.add_subparsers(dest="step", required=True)

    ex = steps.add_parser("extract", help="find, landmark and align the faces of a video or image sequence")
    ex.add_argument("input", type=Path, help="a movie file or a folder of PNG / JPEG / EXR frames")
    ex.add_argument("--out", type=Path, required=True, help="the faceset folder to write (resumed if it exists)")
    ex.add_argument("--start", type=FRAME, default=0, help="first source frame (0-based)")
    ex.add_argument("--count", type=COUNT, default=None, help="number of frames (default: to the end)")
    ex.add_argument("--aligner", choices=["auto", "fan", "dlib"], default="auto")
    _device_options(ex)
    ex.add_argument("--detector", choices=["hog", "cnn"], default="hog",
                    help="dlib backend's face detector: hog (fast, frontal) or cnn (finds turned and partly hidden faces; slow on a CPU)")
    ex.add_argument("--size", type=number(int, 32, 1024), default=256, help="aligned crop size in pixels (32..1024)")
    ex.add_argument("--face", choices=["largest", "all"], default="largest",
                    help="largest: one face per frame (for training); all: every face, with its index")
    ex.add_argument("--force", action="store_true", help="replace a faceset of another source in --out")
    ex.add_argument("--events", choices=["jsonl"], default=None, help="JSON events on stdout instead of a progress bar")

    tr = steps.add_parser("train", help="train (or resume) a model on faceset A (the footage's face) and B (the new face)")
    tr.add_argument("--faceset-a", type=Path, action="append", required=True, help="faceset of A; repeat for several")
    tr.add_argument("--faceset-b", type=Path, action="append", required=True, help="faceset of B; repeat for several")
    tr.add_argument("--model", type=Path, required=True, help="model folder: created, or resumed if it exists")
    tr.add_argument("--preset", choices=["small", "standard", "large"], default="small",
                    help="small: 64 px (CPU, quick looks); standard: 128 px; large: 256 px")
    tr.add_argument("--iterations", type=number(int, 1, 10**9), default=1000, help="train until this iteration (a resumed model continues)")
    tr.add_argument("--batch-size", type=number(int, 1, 512), default=None,
                    help="faces per identity per step, 1..512 (default: 16 on CPU, the most that fits on CUDA)")
    _device_options(tr)
    tr.add_argument("--seed", type=number(int, 0, 2**31 - 1), default=None,
                    help="random seed of a new model (default 0); a resumed model continues its own random streams")
    tr.add_argument("--holdout", type=number(float, 0.0, 0.9), default=None,
                    help="share of each faceset's last frames kept out of training, 0..0.9 (default 0; a resumed model keeps its own)")
    tr.add_argument("--layout", choices=["df", "liae"], default=None,
                    help="df: a decoder per person (default, or the --init model's); liae: one shared decoder")
    tr.add_argument("--recipe", choices=["v1", "v2", "v3"], default=None,
                    help="how a new model trains (core/recipe.py; default v3, a resumed model keeps its own)")
    tr.add_argument("--init", type=Path, default=None, help="start a new model from this pretrained one (`deepfake pretrain`)")
    tr.add_argument("--reset", choices=["none", "bottleneck"], default="none",
                    help="what of the --init model starts anew (default: none; bottleneck draws the dense latent anew)")
    _training_options(tr)

    pt = steps.add_parser("pretrain", help="train a generic model on many people, for pairs to start from (train --init)")
    pt.add_argument("--faceset", type=Path, action="append", required=True, help="a person's faceset; repeat for each")
    pt.add_argument("--model", type=Path, required=True, help="model folder: created, or resumed if it exists")
    pt.add_argument("--preset", choices=["small", "standard", "large"], default="small")
    pt.add_argument("--layout", choices=["df", "liae"], default=None, help="default: df")
    pt.add_argument("--recipe", choices=["v1", "v2", "v3"], default=None, help="default: v3")
    pt.add_argument("--iterations", type=number(int, 1, 10**9), default=10000, help="train until this iteration")
    pt.add_argument("--batch-size", type=number(int, 1, 512), default=None)
    _device_options(pt)
    pt.add_argument("--seed", type=number(int, 0, 2**31 - 1), default=None)
    _training_options(pt)

    sw = steps.add_parser("swap", help="replace the trained person's face in a movie or image sequence")
    sw.add_argument("input", type=Path, help="a movie file or a folder of PNG / JPEG / EXR frames")
    sw.add_argument("--model", type=Path, required=True)
    sw.add_argument("--out", type=Path, required=True, help="a folder (png, exr) or a .mp4 file")
    sw.add_argument("--start", type=FRAME, default=0)
    sw.add_argument("--count", type=COUNT, default=None)
    sw.add_argument("--end", type=FRAME, default=None,
                    help="the last frame to swap (inclusive); with --count, the range stops at whichever comes first "
                         "(a farm chunk: --start CHUNK --count SIZE --end SHOT_END)")
    sw.add_argument("--alignments", type=Path, default=None, help="alignments.json of an extraction of the same source")
    sw.add_argument("--direction", choices=["a2b", "b2a"], default="a2b", help="a2b: the footage shows A, paint B")
    sw.add_argument("--mode", choices=["composite", "overlay"], default="composite",
                    help="composite: full frames; overlay: an RGBA face layer for Alpha Over above the source")
    sw.add_argument("--format", choices=["png", "exr", "mp4"], default="png")
    sw.add_argument("--bit-depth", type=int, choices=[8, 16], default=8, help="PNG bit depth")
    sw.add_argument("--color", choices=list(COLOR_TRANSFERS), default=DEFAULT_COLOR)
    sw.add_argument("--smooth", type=number(float, 0.0, 10.0), default=1.0, help="temporal smoothing strength, 0..10 (0: off)")
    sw.add_argument("--erode", type=number(float, 0.0, 0.5), default=0.03, help="mask erosion, as a share of the face width (0..0.5)")
    sw.add_argument("--blur", type=number(float, 0.0, 1.0), default=0.08, help="mask feather, as a share of the face width (0..1)")
    sw.add_argument("--face", choices=["identity", "largest"], default="identity",
                    help="identity: the face closest to the trained person; largest: the biggest face")
    sw.add_argument("--yuv", choices=("accurate", "fast"), default="accurate",
                    help="movie YUV to RGB as Blender 4.4+ (accurate) or 4.2 (fast) reads it, so untouched pixels "
                         "match the strip below bit for bit")
    sw.add_argument("--colorspace", default=None, help="the source's colourspace (default: sRGB, or Linear Rec.709 for EXR)")
    sw.add_argument("--ocio-config", default=None, help="OCIO config (default: a built-in one; the add-on passes Blender's)")
    sw.add_argument("--aligner", choices=["auto", "fan", "dlib"], default="auto")
    _device_options(sw)
    sw.add_argument("--existing", choices=("refuse", "replace", "new"), default="refuse",
                    help="when --out holds another swap (other source, model, iteration or settings): refuse (default), "
                         "replace it, or keep it and write to the first free OUT_2, OUT_3...; the same swap always resumes")
    sw.add_argument("--force", action="store_true", help="the same as --existing replace")
    sw.add_argument("--preroll", type=number(int, 0, 10**4), default=None,
                    help="frames before --start (and before a resumed stretch) read to warm the smoothing, not written; "
                         "default: the filters' memory (47 at 30 fps), so a chunk equals the same frames of a whole-shot swap")
    _label_options(sw)
    sw.add_argument("--events", choices=["jsonl"], default=None)

    fj = steps.add_parser("farm-job", help="write a render-farm job bundle (Open Job Description) that swaps a shot "
                                           "in chunks and assembles the movie")
    fj.add_argument("input", type=Path, help="the source movie or image folder")
    fj.add_argument("--model", type=Path, required=True)
    fj.add_argument("--out", type=Path, required=True, help="the frame folder the chunks write into")
    fj.add_argument("--movie", type=Path, default=None, help="the assembled movie (default: OUT.mp4)")
    fj.add_argument("--start", type=FRAME, default=0)
    fj.add_argument("--count", type=COUNT, default=None)
    fj.add_argument("--end", type=FRAME, default=None, help="the last frame (inclusive), instead of --count")
    fj.add_argument("--chunk-size", type=COUNT, default=50, help="frames per farm task (each adds a pre-roll)")
    fj.add_argument("--aligner", choices=["auto", "fan", "dlib"], default="auto")
    _device_options(fj)
    fj.add_argument("--color", choices=list(COLOR_TRANSFERS), default=DEFAULT_COLOR)
    fj.add_argument("--colorspace", default="sRGB", help="the source's colourspace")
    fj.add_argument("--yuv", choices=("accurate", "fast"), default="accurate")
    fj.add_argument("--ocio-config", default="", help="an OCIO config the workers can read (default: the core's own)")
    fj.add_argument("--existing", choices=("refuse", "replace"), default="refuse",
                    help="when --out holds another swap: the chunks refuse (default), or the first replaces it")
    fj.add_argument("--core-python", default=sys.executable,
                    help="the core's interpreter as the farm's workers reach it (default: this one)")
    fj.add_argument("--name", default=None, help="the job's name (default: the output folder's)")
    fj.add_argument("--bundle", type=Path, required=True, help="the folder to write the job bundle into")
    fj.add_argument("--events", choices=["jsonl"], default=None)

    fr = steps.add_parser("farm-result", help="check that a farm job swapped every frame of a range; describe it as a swap")
    fr.add_argument("folder", type=Path, help="the frame folder the farm job wrote")
    fr.add_argument("--start", type=FRAME, default=0)
    fr.add_argument("--count", type=COUNT, required=True)
    fr.add_argument("--events", choices=["jsonl"], default=None)

    en = steps.add_parser("encode", help="make one movie of a swap's PNG frame folder (e.g. a shot swapped in chunks)")
    en.add_argument("folder", type=Path, help="the --out folder of a `deepfake swap` to PNG")
    en.add_argument("--out", type=Path, required=True, help="the movie to write (.mp4)")
    en.add_argument("--start", type=FRAME, default=None, help="first frame (default: the swaps' completed stretch)")
    en.add_argument("--count", type=COUNT, default=None)
    en.add_argument("--end", type=FRAME, default=None, help="the last frame (inclusive), instead of --count")
    _label_options(en, visible=False)
    en.add_argument("--events", choices=["jsonl"], default=None)

    lb = steps.add_parser("label", help="add provenance labels to files another program wrote (a sequencer render "
                                        "of a swapped shot)", fromfile_prefix_chars="@")
    lb.add_argument("files", type=Path, nargs="+",
                    help="PNG, JPEG, EXR frames or .mp4 / .mov movies; @LIST reads the names from a file, one a line")
    lb.add_argument("--swap", type=Path, action="append", default=[],
                    help="a swap output (frame folder or .mp4) shown in these files: its source and model are named "
                         "in the labels (repeatable)")
    _label_options(lb, visible=False)
    lb.add_argument("--events", choices=["jsonl"], default=None)

    ve = steps.add_parser("verify", help="read back a file's or a frame folder's provenance: Content Credentials "
                                         "(valid? signed by whom? trusted?) and plain labels")
    ve.add_argument("target", type=Path, help="a PNG / JPEG / EXR / movie file or a folder of them")
    ve.add_argument("--trust-anchors", type=Path, default=None,
                    help="PEM certificates of the CAs whose signatures count as trusted (your studio's); "
                         "without them every signer is reported as not trusted")
    ve.add_argument("--events", choices=["jsonl"], default=None)

    ev = steps.add_parser("evaluate", help="measure a swap against its source (or a model on its held-out faces)")
    ev.add_argument("--source", type=Path, default=None, help="the source movie or image folder that was swapped")
    ev.add_argument("--swapped", type=Path, default=None,
                    help="the swap's output: a folder of frame_NNNNNN images (paired by frame number) or a movie")
    ev.add_argument("--model", type=Path, default=None, help="instead of a clip: rebuild quality on the model's held-out faces")
    ev.add_argument("--faceset-a", type=Path, default=None,
                    help="faceset of A (the face in the footage; default: the first the swap's model was trained on)")
    ev.add_argument("--faceset-b", type=Path, default=None,
                    help="faceset of B (the new face; default: the first the swap's model was trained on)")
    ev.add_argument("--start", type=FRAME, default=None, help="first source frame (default: the swapped folder's first, or 0)")
    ev.add_argument("--count", type=COUNT, default=None, help="number of frames (default: to the swapped folder's last, or the end)")
    ev.add_argument("--direction", choices=["a2b", "b2a"], default=None,
                    help="a2b: the footage shows A and the swap paints B (default: what the swap recorded, else a2b)")
    ev.add_argument("--yuv", choices=("accurate", "fast"), default=None,
                    help="decode movies as the swap did (its --yuv; default: what it recorded, else accurate)")
    ev.add_argument("--json", type=Path, default=None, help="write the report as JSON (summary and per-frame arrays)")
    ev.add_argument("--html", type=Path, default=None, help="write a self-contained HTML page (plots go beside it as PNG)")
    ev.add_argument("--report", type=Path, default=None,
                    help="a folder to write report.json and report.html into (instead of naming --json and --html)")
    ev.add_argument("--events", choices=["jsonl"], default=None)

    ins = steps.add_parser("inspect", help="say what a file or folder is and holds (faceset, model, swap output, "
                                            "report, image sequence, movie); `info` is the same")
    ins.add_argument("path", type=Path)
    ins.add_argument("--events", choices=["jsonl"], default=None)
    info = steps.add_parser("info", help="the same as inspect (kept for scripts that check a faceset with it)")
    info.add_argument("path", type=Path)
    info.add_argument("--events", choices=["jsonl"], default=None)

    doc = steps.add_parser("doctor", help="check that the core's dependencies import here, and which device it would use")
    doc.add_argument("--events", choices=["jsonl"], default=None)
    return parser


def run_inspect(args: argparse.Namespace, events: Events) -> None:
    from core.inspection import inspect_path, summary_line

    described = inspect_path(args.path)
    events.result([described["path"]], **described)
    if not events.jsonl:
        print(summary_line(described))


def run_doctor(args: argparse.Namespace, events: Events) -> int:
    from core.doctor import diagnose

    report = diagnose()
    events.result([], **report)
    if not events.jsonl:
        print(report["message"])
    return 0 if report["ok"] else 1


def run_train(args: argparse.Namespace, events: Events) -> None:
    from core.train import TrainSettings, train

    settings = TrainSettings(facesets_a=args.faceset_a, facesets_b=args.faceset_b, model_dir=args.model,
                             preset=args.preset, iterations=args.iterations, batch_size=args.batch_size,
                             device=args.device, seed=args.seed, holdout=args.holdout,
                             save_every=args.save_every, preview_every=args.preview_every,
                             layout=args.layout, init=args.init, reset=args.reset, precision=args.precision,
                             recipe=_recipe(args.recipe))
    _report_training(train(settings, events), events)


def run_pretrain(args: argparse.Namespace, events: Events) -> None:
    from core.train import TrainSettings, pretrain

    settings = TrainSettings(facesets_a=[], facesets_b=[], model_dir=args.model, preset=args.preset,
                             iterations=args.iterations, batch_size=args.batch_size, device=args.device,
                             seed=args.seed, save_every=args.save_every, preview_every=args.preview_every,
                             layout=args.layout, precision=args.precision, recipe=_recipe(args.recipe))
    _report_training(pretrain(args.faceset, settings, events), events)


def _recipe(name: str | None):
    from core.recipe import RECIPES

    return RECIPES[name] if name else None


def _report_training(summary: dict, events: Events) -> None:
    if not events.jsonl:
        rate = f", {summary['samples_per_s']} samples/s" if summary["samples_per_s"] else ""
        events.log(f"{summary['model']}: iteration {summary['iteration']}, loss A {summary['loss_a']}, "
                   f"loss B {summary['loss_b']}{rate}")


def range_count(start: int | None, count: int | None, end: int | None) -> int | None:
    """--count cut at --end (the last frame, inclusive)."""
    if end is None:
        return count
    first = start or 0
    if end < first:
        raise UsageError(f"--end {end} is before --start {first}")
    return min(count or end - first + 1, end - first + 1)


def run_swap(args: argparse.Namespace, events: Events) -> None:
    from core.swap import SwapSettings, swap

    args.count = range_count(args.start, args.count, args.end)
    args.ocio_config = args.ocio_config or None  # "" (a farm template's empty parameter): the built-in config
    keys = ("start", "count", "alignments", "direction", "mode", "format", "bit_depth", "color", "smooth", "erode",
            "blur", "face", "colorspace", "ocio_config", "yuv", "aligner", "device", "force", "existing", "preroll")
    settings = SwapSettings(**{k: getattr(args, k) for k in keys}, label=_label_settings(args))
    summary = swap(args.input, args.model, args.out, settings, events)
    if not events.jsonl:
        flags = ", ".join(f"{n} {r}" for r, n in summary["flags"].items()) or "none"
        events.log(f"{summary['output']}: {summary['frames_written']} of {summary['frames']} frames written "
                   f"({summary['fps'] or 0:.1f} frames/s), flags: {flags}")


def run_farm_job(args: argparse.Namespace, events: Events) -> None:
    from core.farm import ShotJob, write_bundle
    from core.media import open_source

    count = range_count(args.start, args.count, args.end)
    if count is None:
        with open_source(args.input) as source:
            count = source.info.frame_count - args.start
    job = ShotJob(source=args.input.resolve(), model=args.model.resolve(), output=args.out.resolve(),
                  movie=(args.movie or args.out.with_suffix(".mp4")).resolve(), frame_start=args.start,
                  frame_end=args.start + count - 1, chunk_size=args.chunk_size, core_python=args.core_python,
                  aligner=args.aligner, device=args.device, color=args.color, colorspace=args.colorspace, yuv=args.yuv,
                  ocio_config=str(args.ocio_config or ""), existing=args.existing, name=args.name or args.out.name)
    files = write_bundle(args.bundle, job)
    chunks = job.chunks()
    events.result([str(f) for f in files], bundle=str(args.bundle), frame_start=job.frame_start,
                  frame_end=job.frame_end, chunks=len(chunks), output=str(job.output), movie=str(job.movie))
    if not events.jsonl:
        events.log(f"{args.bundle}: frames {job.frame_start}..{job.frame_end} in {len(chunks)} chunks of "
                   f"{job.chunk_size}; run it with: openjd run {files[0]} --step Assemble --run-dependencies "
                   f"-p file://{files[2]}")


def run_farm_result(args: argparse.Namespace, events: Events) -> None:
    from core.farm import collect

    summary = collect(args.folder, args.start, args.count)
    events.result([summary["output"]], **summary)
    if not events.jsonl:
        events.log(f"{summary['output']}: frames {args.start}..{args.start + args.count - 1} all swapped")


def run_encode(args: argparse.Namespace, events: Events) -> None:
    from core.encode import encode

    summary = encode(args.folder, args.out, events, start=args.start, count=range_count(args.start, args.count, args.end),
                     label=_label_settings(args))
    if not events.jsonl:
        events.log(f"{summary['output']}: frames {summary['start']}..{summary['start'] + summary['frames'] - 1} at "
                   f"{summary['fps']:g} fps{', with the source sound' if summary['audio'] else ', no sound'}")


def run_label(args: argparse.Namespace, events: Events) -> None:
    from core import swap_output
    from core.provenance import Labeller
    from core.provenance.label_files import label_files

    if args.no_label:
        raise DeepfakeError("label --no-label would do nothing: leave the files as they are instead")
    sources, models = [], []
    for out in args.swap:
        record = swap_output.read_record(out)
        if record.get("record") != swap_output.FORMAT:
            raise DeepfakeError(f"{out} is not a swap's output (it has no {swap_output.RECORD}): --swap takes the "
                                "--out of a `deepfake swap`")
        sources.append(Path(str((record.get("source") or {}).get("path"))))
        models.append(str(record.get("model_id")))
    # One source and model name the render's ingredient; a render of several swaps names them all in the label.
    labeller = Labeller.start(_label_settings(args), sources[0] if len(set(sources)) == 1 else None,
                              ", ".join(dict.fromkeys(models)) or None, events)
    files = label_files(args.files, labeller)
    events.result([str(f) for f in files], files=len(files), credentials=labeller.credentials_text())
    if not events.jsonl:
        events.log(f"labelled {len(files)} file{'s' if len(files) != 1 else ''}")


def run_verify(args: argparse.Namespace, events: Events) -> int:
    from core.provenance.verify import verify

    report = verify(args.target, args.trust_anchors)
    events.result([str(args.target)], **report.summary())
    if not events.jsonl:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def check_report_paths(reports: list[Path | None], protected: list[Path | None]) -> None:
    """Reports (and the plots written beside them) go to new files of the user's choosing: never
    over the source, the swap's frames, the model or a faceset, never both to one file, never
    onto a folder; and the folder is found writable now, not after the evaluation."""
    from core.outputs import ensure_writable

    wanted = [Path(r) for r in reports if r is not None]
    if len(wanted) == 2 and wanted[0].resolve() == wanted[1].resolve():
        raise DeepfakeError("--json and --html name the same file: give each its own")
    for report in wanted:
        target = report.resolve()
        if target.is_dir():
            raise DeepfakeError(f"report {report} is a folder: name a file (e.g. {report / 'report.json'})")
        for keep in (Path(k).resolve() for k in protected if k is not None):
            if target == keep or keep in target.parents:
                raise DeepfakeError(f"report {report} would overwrite or go inside {keep}: choose another path")
        ensure_writable(target.parent)


def run_evaluate(args: argparse.Namespace, events: Events) -> None:
    from core.evaluate import EvaluateSettings, evaluate_clip, evaluate_model, trained_facesets
    from core.report import clean, format_table, report_paths, write_reports

    if args.report is not None:
        if args.json is not None or args.html is not None:
            raise DeepfakeError("--report names the folder for both reports: give it, or --json / --html, not both")
        args.json, args.html = report_paths(args.report)
    check_report_paths([args.json, args.html], [args.source, args.swapped, args.model, args.faceset_a, args.faceset_b])
    if args.model is not None:
        if args.source is not None or args.swapped is not None:
            raise DeepfakeError("--model evaluates a model, --source / --swapped a clip: give one or the other")
        report = evaluate_model(args.model, [args.faceset_a] if args.faceset_a else None,
                                [args.faceset_b] if args.faceset_b else None, events)
    else:
        if args.source is None or args.swapped is None:
            raise DeepfakeError("evaluate needs --source and --swapped (a swapped clip) or --model (a model)")
        if args.faceset_a is None or args.faceset_b is None:
            trained_a, trained_b = trained_facesets(args.swapped)
            args.faceset_a, args.faceset_b = args.faceset_a or trained_a, args.faceset_b or trained_b
        report = evaluate_clip(args.source, args.swapped, args.faceset_a, args.faceset_b,
                               EvaluateSettings(start=args.start, count=args.count, direction=args.direction,
                                                yuv=args.yuv), events)
    outputs = write_reports(report, args.json, args.html)
    if events.jsonl:
        events.result(outputs, kind=report["kind"],
                      summary=clean(report["summary"] if report["kind"] == "clip" else
                                    {k: {f: v[f] for f in ("faces", "ssim", "psnr", "control_ssim", "control_psnr")}
                                     for k, v in report["identities"].items()}),
                      counts=report.get("counts"), target=report.get("target"),
                      json=str(args.json) if args.json else None, html=str(args.html) if args.html else None)
    else:
        print(format_table(report))
        if outputs:
            events.log("wrote " + ", ".join(outputs))


def run_extract(args: argparse.Namespace, events: Events) -> None:
    from core.extract import ExtractSettings, extract

    settings = ExtractSettings(size=args.size, aligner=args.aligner, device=args.device, detector=args.detector, face=args.face,
                               start=args.start, count=args.count, force=args.force)
    summary = extract(args.input, args.out, settings, events)
    if not events.jsonl:
        events.log(f"{summary['faceset']}: {summary['faces']} faces from {summary['frames']} frames "
                   f"({summary['no_face_frames']} without a face), aligner {summary['aligner']}, "
                   f"{summary['fps'] or 0:.1f} frames/s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    # On an Apple GPU, an op MPS lacks then runs on the CPU instead of failing a long training
    # halfway; read by torch at import, which no step has done yet. No effect on CUDA or the CPU.
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        jsonl = any(a == "--events=jsonl" or (a == "--events" and b == "jsonl") for a, b in zip(argv, argv[1:] + [""]))
        Events(jsonl=jsonl).error(str(exc))
        return 2
    events = Events(jsonl=args.events == "jsonl")
    if getattr(args, "offline", False):
        go_offline()
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C and the add-on's Cancel are SIGINT. A process started in the background by a
    # non-interactive shell (a farm, CI, nohup) inherits SIGINT ignored, and Python then leaves it
    # ignored: Cancel would do nothing until the runner's SIGTERM. The step always saves and stops.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = {"extract": run_extract, "train": run_train, "pretrain": run_pretrain, "swap": run_swap,
                  "encode": run_encode, "farm-job": run_farm_job, "farm-result": run_farm_result,
                  "evaluate": run_evaluate, "inspect": run_inspect, "info": run_inspect,
                  "doctor": run_doctor, "label": run_label,
                  "verify": run_verify}[args.step](args, events)
    except DeepfakeError as exc:
        events.error(str(exc))
        return 1
    except OSError as exc:
        # The environment's fault, not ours: a full disk, a read-only or vanished folder, a
        # permission. One line saying which file and why; the steps keep what they wrote whole.
        if is_disk_full(exc):
            events.error(str(disk_full(exc, exc.filename or "the output", "what was written before is kept")))
        else:
            where = f"{exc.filename}: " if exc.filename else ""
            events.error(f"{where}{exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        events.error("interrupted; the work done so far is saved and a rerun resumes it")
        return 130
    return status or 0  # verify: 1 when a file is unlabelled or changed after signing


if __name__ == "__main__":
    sys.exit(main())
