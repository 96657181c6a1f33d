"""Recipes, layouts, precision and pretraining on the d18 / d19 facesets, on the CPU: what a model
records, what resumes bit-identically, what a model of an earlier version does, what is refused."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import run_cli
from test_train import _settings, _tensors  # the training tests' settings (batch 4, CPU, seed 7) and checkpoint reader
from core.errors import DeepfakeError
from core.events import Events
from core.model import load_model
from core.outputs import LOCK_NAME
from core.recipe import V1, V2, Recipe
from core.train import INIT_RESETS, pretrain, train

QUIET = Events(jsonl=True, out=open(os.devnull, "w"))
# Every knob of a recipe away from its plain value, so that a resume which lost one shows.
BUSY = dataclasses.replace(V2, name="busy", warmup=4, eye_mouth_priority=30.0, unwarped_every=3, ema=0.99,
                           detail_weight=1.0, augment=dataclasses.replace(V2.augment, light_ramp=0.2))


def _differing(x: Path, y: Path) -> list[str]:
    a, b = _tensors(x), _tensors(y)
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("layout, precision", [("liae", "fp32"), ("liae", "bf16"), ("df", "bf16")])
def test_resume_is_bit_identical_for_every_layout_and_precision(tmp_path, d18_faceset, d19_faceset, layout, precision):
    """bf16 autocast and channels_last are the CUDA path; on the CPU they run the same code, at
    about 5 s an iteration here (no bf16 arithmetic on this CPU), hence fewer iterations: the
    resume then falls inside the recipe's warm-up (4), which it must also continue exactly."""
    # latent_match is a DF option (LIAE refuses it), so only the DF case carries it.
    recipe = dataclasses.replace(BUSY, latent_match=1.0) if layout == "df" else BUSY
    kw = {"layout": layout, "recipe": recipe, "precision": precision}
    half = 6 if precision == "fp32" else 3
    train(_settings(d18_faceset, d19_faceset, tmp_path / "resumed", half, **kw), QUIET)
    train(_settings(d18_faceset, d19_faceset, tmp_path / "resumed", 2 * half, **kw), QUIET)
    summary = train(_settings(d18_faceset, d19_faceset, tmp_path / "straight", 2 * half, **kw), QUIET)
    assert not _differing(tmp_path / "resumed", tmp_path / "straight")
    assert all(torch.isfinite(torch.tensor(summary[k])) for k in ("loss_a", "loss_b"))
    model, config, _, _ = load_model(tmp_path / "resumed")
    assert config.layout == layout
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never stores bf16 weights
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert Recipe.from_json(state["recipe"]) == recipe
    # The saved model is the average (what swaps use); the raw weights ride along, and differ.
    tensors = _tensors(tmp_path / "resumed")
    averaged = [k for k in tensors if k.startswith("model.") and k.endswith("weight")]
    assert averaged and all(f"train.{k[6:]}" in tensors for k in averaged)
    assert any(not torch.equal(tensors[k], tensors[f"train.{k[6:]}"]) for k in averaged)


def test_a_model_of_the_previous_format_resumes_as_it_was_trained(tmp_path, d18_faceset, d19_faceset):
    """A folder written before layouts and recipes were recorded (no "layout" in config.json, no
    "recipe" in the state) is a DF model trained with v1: it resumes bit-identically to a v1 run."""
    old = tmp_path / "old"
    train(_settings(d18_faceset, d19_faceset, old, 6, layout="df", recipe=V1), QUIET)
    config = json.loads((old / "config.json").read_text())
    del config["layout"]
    (old / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    with safe_open(str(old / "model.safetensors"), "pt") as f:
        metadata, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    state = json.loads(metadata["state"])
    for key in ("recipe", "pretrain", "init"):
        del state[key]
    state |= {"learning_rate": 5e-5, "betas": [0.5, 0.999]}  # what that version recorded instead
    stored = json.loads(metadata["config"])
    del stored["layout"]
    metadata |= {"state": json.dumps(state), "config": json.dumps(stored)}
    save_file(tensors, str(old / "model.safetensors"), metadata=metadata)
    (old / "state.json").write_text(json.dumps(state))

    train(_settings(d18_faceset, d19_faceset, old, 12), QUIET)
    train(_settings(d18_faceset, d19_faceset, tmp_path / "v1", 12, layout="df", recipe=V1), QUIET)
    assert not _differing(old, tmp_path / "v1")
    assert json.loads((old / "state.json").read_text())["recipe"]["name"] == "v1"
    with pytest.raises(DeepfakeError, match=r"recipe 'v1' \(.*betas \[0.5, 0.999\] -> \[0.9, 0.999\]"):
        train(_settings(d18_faceset, d19_faceset, old, 14, recipe=V2), QUIET)
    with pytest.raises(DeepfakeError, match="DF layout; a resumed model keeps it"):
        train(_settings(d18_faceset, d19_faceset, old, 14, layout="liae"), QUIET)


def test_a_pair_starts_from_a_pretrained_model(tmp_path, d18_faceset, d19_faceset):
    """The kept parts start where the pretrained model left them (one Adam step moves a weight by
    about the learning rate), the reset parts anew; the folder records where it came from."""
    generic = tmp_path / "generic"
    # Another seed than the pair's: a reset part drawn with the pretraining's own seed would equal
    # its untrained start, which 4 iterations hardly moved.
    pretrain([d18_faceset, d19_faceset], _settings(d18_faceset, d19_faceset, generic, 4, layout="liae", seed=3), QUIET)
    pair = tmp_path / "pair"
    train(_settings(d18_faceset, d19_faceset, pair, 1, init=generic, reset="bottleneck"), QUIET)
    before, after = _tensors(generic), _tensors(pair)
    reset = tuple(f"model.{name}." for name in INIT_RESETS["bottleneck"]["liae"])
    for name, w in before.items():
        if not name.startswith("model.") or not name.endswith("weight"):  # biases start at 0
            continue
        change = float((after[name] - w).norm() / w.norm())
        if name.startswith(reset):
            assert change > 0.5, (name, change)
        else:
            assert change < 0.05, (name, change)
    state = json.loads((pair / "state.json").read_text())
    generic_state = json.loads((generic / "state.json").read_text())
    assert state["init"] == {"model": str(generic.resolve()), "model_id": generic_state["model_id"],
                             "iteration": 4, "pretrain": True, "reset": "bottleneck"}
    assert state["model_id"] != generic_state["model_id"] and not state["pretrain"] and generic_state["pretrain"]
    assert load_model(pair)[1].layout == "liae"  # the layout comes with the pretrained weights


def test_pretraining_mistakes_are_refused_and_lose_nothing(tmp_path, d18_faceset, d19_faceset):
    generic = tmp_path / "generic"
    one = run_cli("pretrain", "--faceset", d18_faceset, "--model", generic, "--iterations", 2, "--device", "cpu")
    assert one.returncode == 1 and "several people" in one.stderr and not generic.exists()
    ok = run_cli("pretrain", "--faceset", d18_faceset, "--faceset", d19_faceset, "--model", generic,
                 "--iterations", 2, "--batch-size", 2, "--device", "cpu", "--layout", "df")
    assert ok.returncode == 0, ok.stderr
    weights = (generic / "model.safetensors").read_bytes()
    common = ["--faceset-a", d18_faceset, "--faceset-b", d19_faceset, "--iterations", 4, "--device", "cpu",
              "--batch-size", 2]
    into_generic = run_cli("train", *common, "--model", generic)
    assert into_generic.returncode == 1 and "is a pretrained model" in into_generic.stderr
    other_layout = run_cli("train", *common, "--model", tmp_path / "pair", "--init", generic, "--layout", "liae")
    assert other_layout.returncode == 1 and "DF layout" in other_layout.stderr
    started = run_cli("train", *common, "--model", tmp_path / "pair", "--init", generic)
    assert started.returncode == 0, started.stderr
    # The same start again (the add-on passes Start From on every Train) resumes the pair;
    # another start for a folder that holds a model is refused.
    again = run_cli("train", *common, "--model", tmp_path / "pair", "--init", generic, "--iterations", 5)
    assert again.returncode == 0 and "resuming the model in" in again.stderr, again.stderr
    other = run_cli("train", *common, "--model", tmp_path / "pair", "--init", d18_faceset)
    assert other.returncode == 1 and f"already holds a model, started from {generic.resolve()}" in other.stderr
    assert (generic / "model.safetensors").read_bytes() == weights


def test_the_detail_term_sees_a_blur_that_the_pixel_loss_ranks_like_a_tone_shift(d18_faceset):
    """The detail term's reason to exist: a blurred face and a face shifted in tone, at the same
    pixel L1 from the real one, are equal to the pixel loss and not to the detail term, which only
    the blur pays (a uniform shift has no band-pass content)."""
    import cv2
    import numpy as np

    from core.faceset import Faceset, read_crop
    from core.losses import detail_loss

    _, face = Faceset.load(d18_faceset).spread_faces(1)[0]
    crop = cv2.resize(read_crop(d18_faceset / face.file), (64, 64), interpolation=cv2.INTER_AREA)
    real = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    blurred = torch.from_numpy(cv2.GaussianBlur(crop, (0, 0), 1.5)).permute(2, 0, 1)[None].float() / 255
    shifted = (real + (blurred - real).abs().mean()).clamp(0, 1)
    weights = torch.ones(1, 1, 64, 64)
    assert float((blurred - real).abs().mean()) == pytest.approx(float((shifted - real).abs().mean()), rel=0.1)
    assert float(detail_loss(real, real, weights)) == 0.0
    assert float(detail_loss(blurred, real, weights)) > 5 * float(detail_loss(shifted, real, weights))
    # Weighted like the pixel loss: a change where the weight is zero is (nearly) not seen.
    hull = torch.zeros(1, 1, 64, 64)
    hull[..., 16:48, 16:48] = 1
    outside = real.clone()
    outside[..., :8, :] = blurred[..., :8, :]
    assert float(detail_loss(outside, real, hull)) < 0.05 * float(detail_loss(outside, real, weights))


def test_the_light_ramp_relights_the_input_only_and_leaves_other_draws_as_they_were(d18_faceset):
    """The light ramp (an input-only left-right brightness slope) must not touch the target the
    decoder learns, must brighten the side its sign says, and must leave a recipe without it
    drawing exactly what it drew before (recorded recipes resume as they were trained)."""
    import cv2

    from core.augment import AugmentSettings, augment
    from core.faceset import Faceset, read_crop

    crops = [cv2.resize(read_crop(d18_faceset / face.file), (64, 64), interpolation=cv2.INTER_AREA)
             for _, face in Faceset.load(d18_faceset).spread_faces(8)]
    faces = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    extras = torch.ones(len(crops), 1, 64, 64)

    def run(settings: AugmentSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return augment(faces, extras, settings, torch.Generator().manual_seed(3))

    plain_in, plain_target, _ = run(AugmentSettings())
    ramp_in, ramp_target, _ = run(AugmentSettings(light_ramp=0.3))
    assert torch.equal(plain_target, ramp_target)
    assert not torch.equal(plain_in, ramp_in)
    # Each input is its plain self times 1 + slope * x (up to the clamp at 1): read the slope back
    # from the ratio of the right and left quarters; it lies within the setting, of either sign.
    right, left = (ramp_in[..., s].mean(dim=(1, 2, 3)) / plain_in[..., s].mean(dim=(1, 2, 3))
                   for s in (slice(48, 64), slice(0, 16)))
    slope = (right - left) / (right + left) / 0.75  # the quarters' centres sit at x = +-0.75
    assert float(slope.abs().max()) <= 0.3 + 0.02
    assert float(slope.min()) < -0.05 and float(slope.max()) > 0.05


def test_the_latent_match_term_tells_two_distributions_apart_at_any_scale_and_pulls_them_together():
    """What latent_match rests on (known signals, no model): two draws of one distribution score
    about 0, a shift of a third of a standard deviation in every direction scores far above that,
    the figure does not change when every code shrinks (the kernels follow the median distance,
    so the encoder cannot lower the term by making its codes small), and its gradient moves B's
    codes towards A's."""
    from core.losses import latent_match_loss

    g = torch.Generator().manual_seed(3)
    a, a2, b = (torch.randn(16, 256, generator=g) for _ in range(3))
    b = b + 0.33
    same, shifted = float(latent_match_loss(a, a2)), float(latent_match_loss(a, b))
    assert abs(same) < 0.02 and shifted > 0.05 and shifted > 5 * abs(same)
    assert float(latent_match_loss(a * 0.01, b * 0.01)) == pytest.approx(shifted, rel=1e-3)
    b = b.requires_grad_()
    latent_match_loss(a, b).backward()
    step = b.grad / b.grad.square().mean().sqrt()  # one step of 0.1 RMS per element, downhill
    moved = (b - 0.1 * step).detach()
    assert float((moved.mean() - a.mean()).abs()) < 0.9 * float((b.detach().mean() - a.mean()).abs())
    assert float(latent_match_loss(a, moved)) < 0.5 * shifted


def test_latent_match_in_the_liae_layout_is_refused_before_anything_is_written(tmp_path, d18_faceset, d19_faceset):
    recipe = dataclasses.replace(V1, name="matched", latent_match=1.0)
    with pytest.raises(DeepfakeError, match="latent_match is for the DF layout"):
        train(_settings(d18_faceset, d19_faceset, tmp_path / "liae", 2, layout="liae", recipe=recipe), QUIET)
    # The folder lock is taken first (train() holds it before it opens a model); nothing else is written.
    assert [p.name for p in (tmp_path / "liae").iterdir() if p.name != LOCK_NAME] == []
