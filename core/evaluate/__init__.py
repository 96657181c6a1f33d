"""The Evaluate step: how good a swap is, in figures that each mean something beside a control.

`evaluate_clip` compares a swapped clip (or image sequence) with its source frame by frame;
`evaluate_model` measures how well a model rebuilds its held-out faces. The report (JSON,
plots, HTML) is written by `core.report`.

Every figure of a clip is measured on four views of each frame, in the same way (landmarks
re-detected in the view, the same regions, the same formulas):
- **source**: the untouched source frame, the baseline (a swap should move away from it);
- **swap**: the swapped frame;
- **control**: the *mean-face paste*, the target person's average aligned face (the mean of
  their faceset's crops) pasted onto the source frame through the same feathered landmark-hull
  mask and colour transfer the swap uses, no model at all. DESIGN.md ("Metrics need controls"):
  a face descriptor calls such a blurry paste "B" on every frame, so a swap's identity figures
  mean something only where they beat the control's, and its expression figures only where they
  follow the source where the control cannot. This is the floor.
- **resolution**: the *resolution control*, the source's own face through the model's
  resolution: its aligned crop (the swap's alignment and `faces.align.CROP` size) brought down to the
  model's R px with INTER_AREA and back up with INTER_CUBIC, as the swap resizes into and out of
  the network, then pasted through the same hull mask, erosion and feather (`paste_face`; no
  colour transfer: it is the source's own colour). What a perfect R px model would give, so
  this is the ceiling: DESIGN.md measured, on a ~300 px face, detail 0.03 at 64 px, 0.08 at
  128, 0.32 at 256, and mouth correlation 0.83-0.84 at every size (the re-detected landmarks
  of a resampled face are not the source's exactly). A swap's detail and expression figures
  are read against it: detail near it is all that resolution allows, detail above it is noise
  or artefacts (they raise Laplacian energy too). On d18 (a ~230 px face in 480 px frames) at
  64 px: detail 0.065-0.10, mouth correlation 0.92 and gain 0.98 over frames 56..103, where the
  mouth opens and closes; over 12 frames with the mouth closed the correlation is dlib's noise
  (0.29 on frames 173..184), so read expression over a range where the face moves. R is the
  swap's model's (swap.json names the model folder, its config.json the resolution); where it
  cannot be found (no swap record, model folder gone) the view is skipped, its figures NaN, and
  the report says why.

The package, one module per part:
- `pairing`: which swapped frame goes with which source frame (`pair_frames`, its rules in that
  module's docstring), and what the swap recorded beside its output (`swap_record`,
  `trained_facesets`);
- `controls`: the facesets' identities and the two controls' faces, pasted onto the source frame
  as the swap pastes (`mean_face`, `resampled_face`, `paste_face`, `model_resolution`);
- `measures`: the per-frame figures and the statistics over frames (what each figure means, and
  why, in that module's docstring);
- `clip`: the clip evaluation, frame after frame over the four views, and its report dict
  (`evaluate_clip`);
- `model_quality`: the model evaluation, held-out faces rebuilt (`evaluate_model`).
"""
from core.evaluate.clip import EvaluateSettings, evaluate_clip
from core.evaluate.model_quality import evaluate_model
from core.evaluate.pairing import trained_facesets

__all__ = ["EvaluateSettings", "evaluate_clip", "evaluate_model", "trained_facesets"]
