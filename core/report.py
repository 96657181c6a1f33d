"""The evaluation's report: a JSON summary, plots as PNG and one self-contained HTML page.

`core.evaluate` measures, this module only presents. The JSON holds every figure of the summary
table (swap, mean-face control, resolution control and source baseline side by side) and the
per-frame arrays; NaN (a figure that is undefined, e.g. on a frame without a face) is written as
null. The HTML page
embeds its plots and thumbnails as data URIs, so it can be mailed or archived as one file.
matplotlib is imported only here and only when plots are asked for (the Agg backend: no display).
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.atomic import write_atomic
from core.faces.identity import SAME_PERSON

# (key, label, unit, better): one line of the table per figure.
CLIP_ROWS = (
    ("identity_distance_target", "identity: distance to the target's mean descriptor", "", "lower"),
    ("identity_distance_original", "identity: distance to the original's mean descriptor", "", "higher"),
    ("identity_retrieval", "identity retrieval: frames closer to the target", "%", "higher"),
    ("landmark_error", "landmark error vs the source (of inter-ocular distance)", "%", "lower"),
    ("landmark_offset", "landmark error: the part the same on every frame (face shape; a swap changes some)", "%", "lower"),
    ("landmark_tracking", "landmark error: the part varying frame to frame (pose, expression not followed)", "%", "lower"),
    ("head_turn", "head turn: nose tip off the eyes' midpoint, of the eye distance (0 frontal)", "", "nearer the source's"),
    ("mouth_correlation", "mouth opening follows the source (correlation)", "", "higher"),
    ("eye_correlation", "eye opening follows the source (correlation)", "", "higher"),
    ("mouth_gain", "mouth opening follows the source (gain: share of its change)", "", "higher"),
    ("eye_gain", "eye opening follows the source (gain: share of its change)", "", "higher"),
    ("jitter", "landmark jitter (2nd difference, of inter-ocular distance)", "%", "lower"),
    ("flicker", "flicker: face colour change per frame (8-bit levels)", "", "lower"),
    ("seam", "seam: boundary gradient energy / the source's (1 = none)", "x", "lower"),
    ("detail", "detail kept: face Laplacian energy / the source's (up to the resolution control's)", "x", "higher"),
    ("untouched_changed", "outside the face: pixels changed by more than {level} levels", "%", "lower"),
    ("untouched_any", "outside the face: pixels changed at all", "%", "lower"),
    ("untouched_mean_abs", "outside the face: mean absolute difference (8-bit levels)", "", "lower"),
)
VIEW_NAMES = {"swap": "swap", "control": "mean-face control", "resolution": "resolution control",
              "source": "source (baseline)"}
COLOURS = {"swap": "#d62728", "control": "#1f77b4", "resolution": "#2ca02c", "source": "#7f7f7f"}
READING = ("Identity is read against the mean-face control (the floor: no model at all); detail and "
           "expression against the resolution control (the ceiling: all that a model of this size can keep).")


# --------------------------------------------------------------------------------------------
# Numbers and tables


def _format(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if unit == "%":
        return f"{100 * value:.1f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3f}"


def clean(value: Any) -> Any:
    """JSON-ready: NaN / inf -> None, numpy -> Python, keys starting with '_' dropped."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def clip_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(key, label, {view: formatted value}) per line of the table."""
    level = report.get("thresholds", {}).get("changed_level", "")
    rows = []
    for key, label, unit, better in CLIP_ROWS:
        values = report["summary"].get(key, {})
        label = label.format(level=level)
        if report.get("target"):
            label = label.replace("the target's", f"the target's ({report['target'].upper()})")
            label = label.replace("the original's", f"the original's ({report['original'].upper()})")
            label = label.replace("closer to the target", f"closer to {report['target'].upper()}")
        rows.append((key, f"{label} [{better} is better]", {v: _format(values.get(v), unit) for v in VIEW_NAMES}))
    return rows


def resolution_line(report: dict[str, Any]) -> str:
    """What the resolution control is in this report, or why it was skipped (a report written
    before it existed: not measured)."""
    return report.get("resolution_control") or "not measured"


def format_table(report: dict[str, Any]) -> str:
    """The summary as plain text: one figure per line, swap / control / resolution / source side
    by side, under what each control is."""
    if report.get("kind") == "model":
        return format_model_table(report)
    rows = clip_rows(report)
    width = max(len(label) for _, label, _ in rows)
    counts = report["counts"]
    lines = [(f"{report['swapped']} against {report['source']}, frames {report['range']['start']}.."
             f"{report['range']['start'] + report['range']['count'] - 1} ({report['direction']}, paired by "
             f"{report['pairing']}, {report['mode']}): {counts['frames']} frames, {counts['no_face']} without a "
             f"re-detected face, {counts['no_source_face']} without a source face"),
             f"control: {report.get('control', 'n/a')}",
             f"resolution control: {resolution_line(report)}",
             READING,
             f"{'':{width}}  {'swap':>10}  {'control':>10}  {'resolution':>10}  {'source':>10}"]
    for _, label, values in rows:
        lines.append(f"{label:{width}}  {values['swap']:>10}  {values['control']:>10}  {values['resolution']:>10}  "
                     f"{values['source']:>10}")
    return "\n".join(lines)


def format_model_table(report: dict[str, Any]) -> str:
    lines = [(f"{report['model']}: {report['preset']} ({report['resolution']} px), iteration {report['iteration']}, "
             f"held-out faces (last {report['holdout']:.0%} of each faceset), rebuilt through their own decoder; "
             "control: the untrained model of the same seed")]
    for identity, r in report["identities"].items():
        lines.append(f"  {identity.upper()} ({r['faces']} faces): SSIM {r['ssim']:.3f} (control {r['control_ssim']:.3f}), "
                     f"PSNR {r['psnr']:.2f} dB (control {r['control_psnr']:.2f} dB)")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(clean(report), indent=1) + "\n").encode())
    return path


# --------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(report: dict[str, Any], view: str, key: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in report["per_frame"][view][key]], dtype=np.float64)


def _mark_flags(ax: Any, report: dict[str, Any], label: bool) -> None:
    first = True
    for f in report["flags"]:
        colour = "#ff7f0e" if "no_source_face" in f["reasons"] else "#d62728"
        ax.axvspan(f["frame"] - 0.5, f["frame"] + 0.5, color=colour, alpha=0.18, lw=0,
                   label=("flagged: " + ", ".join(sorted({r for g in report["flags"] for r in g["reasons"]})))
                   if first and label else None)
        first = False


def _panel(ax: Any, report: dict[str, Any], key: str, title: str, ylabel: str, scale: float = 1.0,
           label: bool = False) -> None:
    frames = np.asarray(report["per_frame"]["frame"])
    for view in ("source", "resolution", "control", "swap"):
        if view not in report["per_frame"]:  # a report written before the resolution control
            continue
        values = _series(report, view, key) * scale
        if view == "resolution" and not np.isfinite(values).any():  # skipped: no legend entry either
            continue
        # The source underneath, wide and pale: a swap that equals it stays visible on top.
        style = {"lw": 4, "alpha": 0.45} if view == "source" else {"marker": "o", "ms": 2.5, "lw": 1.2}
        ax.plot(frames, values, color=COLOURS[view], label=VIEW_NAMES[view] if label else None, **style)
    _mark_flags(ax, report, label)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)


def plot_clip(report: dict[str, Any], stem: Path) -> list[Path]:
    """identity, stability and expression plots over the frames, as `<stem>.<name>.png`."""
    plt = _pyplot()
    tgt, org = report["target"], report["original"]
    written = []
    plots = {
        "identity": ((f"distance_{tgt}", f"distance to {tgt.upper()}'s mean descriptor (the target)", "distance", 1.0),
                     (f"distance_{org}", f"distance to {org.upper()}'s mean descriptor (the original)", "distance", 1.0)),
        "stability": (("jitter", "landmark jitter (2nd difference)", "% of inter-ocular", 100.0),
                      ("flicker", "flicker: face colour change from the previous frame", "8-bit levels", 1.0)),
        "expression": (("mouth", "mouth opening (inner lips)", "of inter-ocular", 1.0),
                       ("landmark_error", "landmark error vs the source", "% of inter-ocular", 100.0)),
    }
    for name, panels in plots.items():
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 5.2), sharex=True)
        for i, (ax, (key, title, ylabel, scale)) in enumerate(zip(axes, panels)):
            _panel(ax, report, key, title, ylabel, scale, label=i == 0)
            if name == "identity":
                ax.axhline(SAME_PERSON, color="k", ls="--", lw=0.8,
                           label=f"{SAME_PERSON}: dlib's same-person threshold" if i == 0 else None)
        axes[-1].set_xlabel("source frame", fontsize=9)
        fig.legend(loc="upper center", ncol=5, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        path = Path(f"{stem}.{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# HTML


def _data_uri_png(image_rgb: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
.meta{color:#555;font-size:13px}.strip{display:flex;gap:10px;flex-wrap:wrap}
.strip figure{margin:0;text-align:center;font-size:12px}.strip img{display:block;margin-bottom:2px}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}
"""


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def clip_html(report: dict[str, Any], plots: list[Path]) -> str:
    e = html.escape
    counts = report["counts"]
    body = [f"<h1>Swap evaluation: {e(Path(report['swapped']).name)}</h1>",
            (f"<p class=\"meta\">swapped: {e(report['swapped'])}<br>source: {e(report['source'])}, frames "
            f"{report['range']['start']}..{report['range']['start'] + report['range']['count'] - 1} "
            f"(paired by {e(report['pairing'])}, {e(report['mode'])} output)<br>direction {e(report['direction'])}: "
            f"the footage shows {report['original'].upper()}, the swap paints {report['target'].upper()}; "
            f"A = {e(report['faceset_a'])}, B = {e(report['faceset_b'])}<br>control: {e(report['control'])}<br>"
            f"resolution control: {e(resolution_line(report))}<br>{e(READING)}<br>"
            f"{counts['frames']} frames; {counts['no_face']} without a re-detected face in the swap, "
            f"{counts['no_source_face']} without a face in the source, {counts['control_no_face']} in the control"
            + (f", {counts['resolution_no_face']} in the resolution control" if "resolution_no_face" in counts else "")
            + "</p>"),
            "<h2>Summary</h2>", "<table><tr><th>figure</th>"
            + "".join(f"<th>{e(VIEW_NAMES[v])}</th>" for v in VIEW_NAMES) + "</tr>"]
    for _, label, values in clip_rows(report):
        body.append(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{e(values[v])}</td>" for v in VIEW_NAMES) + "</tr>")
    body.append("</table>")
    body.append("<h2>Over time</h2>")
    body += [f"<img class=\"plot\" alt=\"{e(p.stem)}\" src=\"{_file_uri(p)}\">" for p in plots]
    thumbs = report.get("_thumbnails") or []
    if thumbs:
        tgt = report["target"]
        flags = {f["frame"]: f["reasons"] for f in report["flags"]}
        frames = report["per_frame"]["frame"]
        body.append(f"<h2>Worst frames (largest distance to {tgt.upper()}; flagged frames first): "
                    "source above, swap below</h2><div class=\"strip\">")
        for frame, src, out in thumbs:
            t = frames.index(frame)
            d = report["per_frame"]["swap"][f"distance_{tgt}"][t]
            lm = report["per_frame"]["swap"]["landmark_error"][t]
            caption = f"frame {frame}<br>d({tgt.upper()}) {_format(d, '')}, landmarks {_format(lm, '%')}"
            if frame in flags:
                caption += "<br><b>" + e(", ".join(flags[frame])) + "</b>"
            body.append(f"<figure><img alt=\"source {frame}\" src=\"{_data_uri_png(src)}\">"
                        f"<img alt=\"swap {frame}\" src=\"{_data_uri_png(out)}\"><figcaption>{caption}</figcaption></figure>")
        body.append("</div>")
    return _page(f"Swap evaluation: {Path(report['swapped']).name}", body)


def model_html(report: dict[str, Any]) -> str:
    e = html.escape
    body = [f"<h1>Model evaluation: {e(report['model'])}</h1>",
            (f"<p class=\"meta\">{e(report['preset'])} ({report['resolution']} px), iteration {report['iteration']}, "
            f"seed {report['seed']}; held-out faces: the last {report['holdout']:.0%} of each faceset's frames, "
            "rebuilt through their own decoder. SSIM and PSNR inside the face hull. Control: the untrained "
            "model of the same preset and seed.</p>"),
            ("<table><tr><th>identity</th><th>faces</th><th>SSIM</th><th>SSIM control</th><th>PSNR</th>"
            "<th>PSNR control</th></tr>")]
    for identity, r in report["identities"].items():
        body.append(f"<tr><td>{identity.upper()}</td><td>{r['faces']}</td><td>{r['ssim']:.3f}</td>"
                    f"<td>{r['control_ssim']:.3f}</td><td>{r['psnr']:.2f} dB</td><td>{r['control_psnr']:.2f} dB</td></tr>")
    body.append("</table>")
    for identity, thumbs in (report.get("_thumbnails") or {}).items():
        per_face = dict(zip(report["identities"][identity]["sources"], report["identities"][identity]["per_face_psnr"]))
        body.append(f"<h2>{identity.upper()}: worst rebuilt faces (held-out face above, rebuilt below)</h2>"
                    "<div class=\"strip\">")
        for source, face, rebuilt in thumbs:
            size = max(128, face.shape[0])
            big = [cv2.resize(im, (size, size), interpolation=cv2.INTER_NEAREST) for im in (face, rebuilt)]
            body.append(f"<figure><img alt=\"face\" src=\"{_data_uri_png(big[0])}\"><img alt=\"rebuilt\" "
                        f"src=\"{_data_uri_png(big[1])}\"><figcaption>frame {e(source.rsplit(':', 2)[-2])}<br>"
                        f"{per_face[source]:.2f} dB</figcaption></figure>")
        body.append("</div>")
    return _page(f"Model evaluation: {Path(report['model']).name}", body)


REPORT_JSON, REPORT_HTML = "report.json", "report.html"
"""What `deepfake evaluate --report DIR` writes into DIR."""


def report_paths(folder: Path) -> tuple[Path, Path]:
    return Path(folder) / REPORT_JSON, Path(folder) / REPORT_HTML


def is_report_folder(folder: Path) -> bool:
    return (Path(folder) / REPORT_JSON).is_file()


def write_reports(report: dict[str, Any], json_path: Path | None = None, html_path: Path | None = None) -> list[str]:
    """Write what was asked for; returns the paths written. Plots go beside the HTML page (or the
    JSON when there is no page) as `<stem>.identity.png`, `.stability.png`, `.expression.png`."""
    outputs: list[str] = []
    plots: list[Path] = []
    if report.get("kind") == "clip" and (html_path or json_path):
        anchor = Path(html_path or json_path)
        plots = plot_clip(report, anchor.with_suffix(""))
        report = {**report, "plots": [str(p) for p in plots]}
    if json_path:
        outputs.append(str(write_json(report, Path(json_path))))
    if html_path:
        page = clip_html(report, plots) if report.get("kind") == "clip" else model_html(report)
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(html_path), page.encode("utf-8"))
        outputs.append(str(html_path))
    return outputs + [str(p) for p in plots]
