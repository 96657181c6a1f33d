"""Render-farm jobs for a shot: "swap frames S..E in chunks of K, then assemble the movie".

Why the core writes them: a job bundle is the swap's own command line, split by frame range,
plus the parameter values of one strip; the add-on (and a shell user) asks for one the same way
it asks for a swap. The job itself is an Open Job Description template (`swap_shot.openjd.yaml`,
run by `openjd run`, AWS Deadline Cloud and other OpenJD runners); `deepfake_swap.js` is the same
job as a Flamenco job type. Both run only `python -m core swap` (one chunk) and `python -m core
encode` (the movie), so a chunk behaves on the farm exactly as on the editor's machine: it warms
its smoothing on the frames before it (docs/FARM.md) and merges its flags into the shot's.

`collect` is the way back: what the farm wrote, checked whole, described like a local swap's
result, so the add-on places it on the timeline through the same path.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import swap_output
from core import model_folder
from core.color_transfers import DEFAULT_COLOR
from core.atomic import write_atomic
from core.errors import DeepfakeError
from core.media import open_source
from core.sinks import ImageSequenceSink

TEMPLATE = Path(__file__).with_name("swap_shot.openjd.yaml")
FLAMENCO_JOB_TYPE = Path(__file__).with_name("deepfake_swap.js")
BUNDLE_TEMPLATE = "template.yaml"            # what `deadline bundle submit DIR` reads
BUNDLE_VALUES = "parameter_values.yaml"      # Deadline Cloud's list of {name, value}
BUNDLE_PARAMETERS = "parameters.json"        # the same as a map: `openjd run ... -p file://parameters.json`


@dataclass(frozen=True)
class ShotJob:
    """One shot's farm job: the swap's inputs and the frames, split into chunks."""

    source: Path
    model: Path
    output: Path          # the frame folder every chunk writes into
    movie: Path           # the assembled movie
    frame_start: int
    frame_end: int        # inclusive
    chunk_size: int = 50
    core_python: str = sys.executable
    aligner: str = "auto"
    device: str = "auto"
    color: str = DEFAULT_COLOR
    colorspace: str = "sRGB"
    yuv: str = "accurate"
    ocio_config: str = ""
    existing: str = "refuse"  # or "replace"; "new" cannot work for chunks that must share one folder
    name: str = "shot"

    def chunks(self) -> list[tuple[int, int]]:
        """(start, count) of every chunk, as the template's task range makes them."""
        return [(s, min(self.chunk_size, self.frame_end - s + 1))
                for s in range(self.frame_start, self.frame_end + 1, self.chunk_size)]

    def parameters(self) -> dict[str, str | int]:
        return {"ShotName": self.name, "Source": str(self.source), "Model": str(self.model),
                "Output": str(self.output), "Movie": str(self.movie), "FrameStart": self.frame_start,
                "FrameEnd": self.frame_end, "ChunkSize": self.chunk_size, "CorePython": self.core_python,
                "Aligner": self.aligner, "Device": self.device, "Color": self.color, "Colorspace": self.colorspace,
                "Yuv": self.yuv, "OcioConfig": self.ocio_config,
                "Existing": self.existing}


def check_job(job: ShotJob) -> None:
    """Refuse now what every chunk would refuse on the farm, an hour later."""
    from core.swap import SwapSettings, check_output

    if job.frame_end < job.frame_start:
        raise DeepfakeError(f"the shot ends (frame {job.frame_end}) before it starts (frame {job.frame_start})")
    if job.chunk_size < 1:
        raise DeepfakeError("the chunk size must be at least one frame")
    with open_source(job.source, job.frame_start, job.frame_end - job.frame_start + 1) as source:
        info = source.info
    if info.start + info.count - 1 < job.frame_end:
        raise DeepfakeError(f"{job.source} has {info.frame_count} frames: frame {job.frame_end} is not there")
    if not model_folder.has_config(job.model):
        raise DeepfakeError(f"not a model folder (no {model_folder.CONFIG}): {job.model}")
    check_output(job.output, job.source, SwapSettings(format="png"))
    if job.movie.suffix.lower() != ".mp4":
        raise DeepfakeError(f"the movie should end in .mp4, not {job.movie.name}")


def write_bundle(folder: Path, job: ShotJob) -> list[Path]:
    """A job bundle in `folder`: the template and this shot's parameter values (both forms). A
    folder that is not a bundle of ours and not empty is refused (nothing of the user's is
    overwritten)."""
    check_job(job)
    folder = Path(folder)
    if folder.exists() and any(p.name not in (BUNDLE_TEMPLATE, BUNDLE_VALUES, BUNDLE_PARAMETERS)
                               for p in folder.iterdir()):
        raise DeepfakeError(f"{folder} holds other files: write the job bundle to a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    params = job.parameters()
    values = "parameterValues:\n" + "".join(f"- name: {k}\n  value: {json.dumps(v)}\n" for k, v in params.items())
    write_atomic(folder / BUNDLE_TEMPLATE, TEMPLATE.read_bytes())
    write_atomic(folder / BUNDLE_VALUES, values.encode())
    write_atomic(folder / BUNDLE_PARAMETERS, (json.dumps(params, indent=1) + "\n").encode())
    return [folder / BUNDLE_TEMPLATE, folder / BUNDLE_VALUES, folder / BUNDLE_PARAMETERS]


def collect(output: Path, start: int, count: int) -> dict[str, Any]:
    """What the farm swapped into `output` for frames start .. start + count - 1, as a local
    swap's result describes it; an error naming the missing frames while any is missing."""
    output = Path(output)
    record = swap_output.read_record(output) if output.is_dir() else {}
    if record.get("record") != swap_output.FORMAT:
        raise DeepfakeError(f"{output} holds no swap yet: the farm job has not started writing, or wrote elsewhere")
    fmt = record.get("format")
    if fmt not in ("png", "exr"):
        raise DeepfakeError(f"{output} holds a {fmt} swap, not a frame folder")
    sink = ImageSequenceSink(output, fmt)
    missing = [i for i in range(start, start + count) if not sink.done(i)]
    if missing:
        raise DeepfakeError(f"{len(missing)} of frames {start}..{start + count - 1} are not in {output} yet "
                            f"(from frame {missing[0]}): the farm job is still running, or a chunk failed")
    counts: dict[str, int] = {}
    flags = swap_output.read_flags(output, fmt)
    for frame, reasons in flags.items():
        if start <= frame < start + count:
            for r in reasons:
                counts[r] = counts.get(r, 0) + 1
    from core.swap import is_exr

    source = Path(str((record.get("source") or {}).get("path")))
    exr_source = source.exists() and is_exr(source)
    colorspace = record.get("colorspace")
    return {"output": str(output), "frames": count, "frames_written": 0, "flags": counts,
            "colorspace": colorspace, "direction": record.get("direction"), "model_iteration": record.get("iteration"),
            "ranges": record.get("ranges", []),
            "output_colorspace": "sRGB" if fmt == "png" and exr_source else colorspace,
            **swap_output.placed(output, fmt, start, count, flags)}

