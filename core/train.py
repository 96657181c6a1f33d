"""The Train step: one shared encoder, a decoder per identity, resumable to the iteration.

Hyper-parameters live in the model's recipe (core.recipe: optimiser, loss weights, augmentation),
fixed when the model is made and recorded in its state; docs/TRAINING.md holds the measurements
that chose the default. Loss per identity: weighted L1 + DSSIM on the face (core.losses), the
recipe's eyes-and-mouth priority, plus the mask's L1 against the landmark hull.
- A checkpoint is one safetensors file (weights, Adam state, RNG states) with the state JSON in
  its metadata, replaced atomically; `state.json` beside it is a readable copy. Resuming restores
  all of it, so on the CPU with a fixed seed, 20 + 20 iterations give the weights of 40 straight.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.augment import augment
from core.device import resolve_device
from core.errors import DeepfakeError
from core.events import Events
from core import model_folder
from core.atomic import write_atomic
from core.head_turn import uncovered_turns_warning
from core.losses import detail_loss, latent_match_loss, mask_loss, reconstruction_loss, weight_map
from core.model import (LAYOUTS, PRESETS, FaceSwapModel, ModelConfig, build_model, config_from_weights,
                        load_model, param_count, save_model)
from core.recipe import DEFAULT as DEFAULT_RECIPE, V1, Recipe
from core.outputs import (LOCK_NAME, disk_full, ensure_free_space, ensure_writable, folder_lock, is_disk_full,
                          remove_stale_temps)
from core.train_data import IdentityFaces, load_identity

# docs/TRAINING.md: LIAE with recipe v2 won on d18 and lost on hdtf, so neither is the default yet.
DEFAULT_LAYOUT = "df"
LOG_EVERY = 10
PREVIEW_FACES = 6


@dataclass
class TrainSettings:
    facesets_a: list[Path]
    facesets_b: list[Path]
    model_dir: Path
    preset: str = "small"
    iterations: int = 1000
    batch_size: int | None = None  # None: 16 on the CPU, the largest that fits on CUDA
    device: str = "auto"
    seed: int | None = None  # None: 0 for a new model; a resumed model continues its own streams
    holdout: float | None = None  # None: 0 for a new model; a resumed model keeps its own split
    save_every: int = 250
    preview_every: int = 250
    recipe: Recipe | None = None  # None: the default for a new model; a resumed model keeps its own
    layout: str | None = None  # None: DEFAULT_LAYOUT (or the --init model's) for a new model; a resumed model keeps its own
    init: Path | None = None  # a pretrained model a new model starts from (`deepfake pretrain`)
    # What of `init` starts anew: "none" or "bottleneck" (see INIT_RESETS). "none" won on both pairs
    # of docs/TRAINING.md ("Pretrained for 6,000 iterations") on mouth, landmarks and rebuilds.
    reset: str = "none"
    pretrain: bool = False  # a generic model: A and B are the same pool of many people
    # "auto": bf16 autocast (fp16 where the card lacks bf16) and channels_last on CUDA, fp32 on the
    # CPU. "bf16" asks for them on any device: the CPU runs the same code path (what the tests use).
    precision: str = "auto"


@dataclass
class TrainState:
    iteration: int = 0
    seed: int = 0
    batch_size: int = 16
    losses: list[list[float]] = field(default_factory=list)  # [iteration, loss_a, loss_b]
    facesets_a: list[str] = field(default_factory=list)
    facesets_b: list[str] = field(default_factory=list)
    holdout: float = 0.0
    recipe: dict[str, Any] | None = None  # Recipe.to_json(); None in states from before recipes (v1)
    pretrain: bool = False  # made by `deepfake pretrain`: a start for pairs, not a pair's model
    # What a model started with --init came from: {"model", "model_id", "iteration", "reset"}.
    init: dict[str, Any] | None = None
    model_id: str | None = None  # made once per model: what a swap's record names
    # Every stretch of training with its facesets: [{"from": it, "facesets_a": [...], "facesets_b": [...]}].
    # facesets_a / facesets_b above are the latest stretch's (what swap and evaluate use).
    runs: list[dict[str, Any]] = field(default_factory=list)


class TrainStep(nn.Module):
    """Both identities through the shared encoder in one pass; what DDP wraps."""

    def __init__(self, model: FaceSwapModel):
        super().__init__()
        self.model = model

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latent = self.model.encode(torch.cat([a, b]))
        rgb_a, mask_a = self.model.decode(latent[: len(a)], "a")
        rgb_b, mask_b = self.model.decode(latent[len(a):], "b")
        return rgb_a, mask_a, rgb_b, mask_b, latent


def _device_tensors(data: IdentityFaces, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The identity's faces (n, 3, s, s) and maps (n, 2, s, s: hull, eyes+mouth) as uint8 on the
    training device, once: each step then only gathers a batch there, so a GPU never waits on a
    host copy (a 256 px face is 192 KB; ten thousand fit in 2 GB)."""
    faces = torch.from_numpy(data.faces).permute(0, 3, 1, 2).contiguous().to(device)
    maps = torch.from_numpy(np.stack([data.hull, data.eyes_mouth], axis=1)).to(device)
    return faces, maps


def identity_loss(rgb: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, maps: torch.Tensor,
                  recipe: Recipe) -> torch.Tensor:
    hull, eyes_mouth = maps[:, :1], maps[:, 1:]
    priority = eyes_mouth * recipe.eye_mouth_priority if recipe.eye_mouth_priority else None
    weights = weight_map(hull, eyes_mouth, recipe.eye_mouth_weight)
    loss = reconstruction_loss(rgb, target, weights, priority) + mask_loss(mask, hull)
    if recipe.detail_weight:
        loss = loss + recipe.detail_weight * detail_loss(rgb, target, weights)
    return loss


class Trainer:
    def __init__(self, settings: TrainSettings, events: Events):
        self.settings = settings
        self.events = events
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.device = resolve_device(settings.device, log=events.log if self.rank == 0 else None)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.config, self.model, resume = self._open_model()
        previous = _checkpoint_state(resume[1]) if resume is not None else None
        if previous is not None and bool(previous.get("pretrain")) != settings.pretrain:
            raise DeepfakeError(f"{settings.model_dir} is a pretrained model: start a pair from it with "
                                f"`deepfake train --init {settings.model_dir} --model NEW_FOLDER ...`, or resume it with "
                                "`deepfake pretrain`" if previous.get("pretrain") else
                                f"{settings.model_dir} is a pair's model, not a pretrained one: resume it with `deepfake train`")
        seed = self._check_same(previous, "seed", settings.seed, 0)
        holdout = self._check_same(previous, "holdout", settings.holdout, 0.0)
        res = self.config.resolution
        self.train_a, self.held_a = load_identity(settings.facesets_a, res, holdout)
        self.train_b, self.held_b = load_identity(settings.facesets_b, res, holdout)
        self.data_a = _device_tensors(self.train_a, self.device)
        self.data_b = _device_tensors(self.train_b, self.device)
        if previous is None:
            self.recipe = settings.recipe or DEFAULT_RECIPE
        else:
            recorded = previous.get("recipe")
            self.recipe = Recipe.from_json(recorded) if recorded is not None else V1
            if settings.recipe is not None and settings.recipe != self.recipe:
                theirs, ours = self.recipe.to_json(), settings.recipe.to_json()
                differ = ", ".join(f"{k} {theirs.get(k)} -> {ours.get(k)}" for k in ours if theirs.get(k) != ours.get(k))
                raise DeepfakeError(f"the model in {settings.model_dir} was started with recipe {self.recipe.name!r} "
                                    f"({differ}); a resumed model keeps its recipe: drop the recipe option, or train "
                                    "a new model in another folder")
        if self.recipe.latent_match and self.config.layout != "df":
            # LIAE's shared features are meant to carry identity into B's inter block: drawing A's
            # and B's together there would take away what the layout is for.
            raise DeepfakeError(f"recipe option latent_match is for the DF layout; this model is "
                                f"{self.config.layout.upper()}: set it to 0, or train a DF model")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.recipe.learning_rate, betas=self.recipe.betas)
        self.sample_rng = torch.Generator().manual_seed(seed * 1000 + self.rank)
        self.augment_rng = torch.Generator(device=self.device).manual_seed(seed * 1000 + 500 + self.rank)
        self.state = TrainState(seed=seed, holdout=holdout, model_id=uuid.uuid4().hex, recipe=self.recipe.to_json(),
                                pretrain=settings.pretrain, init=self.init_record,
                                facesets_a=[str(Path(p).resolve()) for p in settings.facesets_a],
                                facesets_b=[str(Path(p).resolve()) for p in settings.facesets_b])
        self.state.runs = [{"from": 0, "facesets_a": self.state.facesets_a, "facesets_b": self.state.facesets_b}]
        self.ema_state: dict[str, torch.Tensor] | None = None
        if resume is not None:
            self._restore(*resume, previous)
        self.saved_iteration = self.state.iteration
        self.amp_dtype = _autocast_dtype(self.device, settings.precision)
        if settings.precision == "bf16" and self.amp_dtype is None:
            events.log(f"precision: bf16 autocast is not used on {self.device.type}; training in fp32")
        self.channels_last = self.amp_dtype is not None
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The averaged model (recipe.ema): its weights are the saved model.*, the raw ones train.*.
        self.ema_model: FaceSwapModel | None = None
        if self.recipe.ema > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
            if self.ema_state is not None:
                self.ema_model.load_state_dict(self.ema_state)
            self.ema_state = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state.batch_size = self._batch_size()
        self.step_module: nn.Module = TrainStep(self.model)
        if self.world > 1:
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- model folder -------------------------------------------------------------------------
    def _open_model(self) -> tuple[ModelConfig, FaceSwapModel, tuple | None]:
        folder = self.settings.model_dir
        if self.settings.preset not in PRESETS:
            raise DeepfakeError(f"unknown preset {self.settings.preset!r}: one of {', '.join(PRESETS)}")
        layout = self.settings.layout
        if layout is not None and layout not in LAYOUTS:
            raise DeepfakeError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
        wanted = dataclasses.replace(PRESETS[self.settings.preset], layout=layout or DEFAULT_LAYOUT)
        self.init_record = None
        if model_folder_state(folder, self.events) == "model":
            model, config, extras, metadata = load_model(folder, device=str(self.device), expect=wanted)
            if layout is not None and layout != config.layout:
                raise DeepfakeError(f"the model in {folder} has the {config.layout.upper()} layout; a resumed model keeps "
                                    f"it: drop --layout (or pass {config.layout}), or train a new model in another folder")
            if self.settings.init is not None:
                # Pressing Train again with the same Start From resumes (the add-on passes it each
                # time rather than asking whether the folder holds a model); another start is refused.
                try:
                    started = (json.loads(metadata.get("state") or "{}").get("init") or {}).get("model")
                except (ValueError, AttributeError, RecursionError):
                    started = None
                if started != str(Path(self.settings.init).resolve()):
                    raise DeepfakeError(f"{folder} already holds a model, started from "
                                        f"{started or 'random weights'}: --init starts a new one; drop --init (or "
                                        "give the model it started from) to resume it, or choose a new folder")
            self.events.log(f"resuming the model in {folder}")
            return config, model, (extras, metadata)
        torch.manual_seed(self.settings.seed or 0)
        if self.settings.init is not None:
            return self._from_pretrained(wanted, layout)
        return wanted, build_model(wanted).to(self.device), None

    def _from_pretrained(self, wanted: ModelConfig, layout: str | None) -> tuple[ModelConfig, FaceSwapModel, None]:
        """A new model that starts from a pretrained one's weights (not its optimiser: the pair is
        a new problem), with INIT_RESETS[reset] drawn anew from the seed (DeepFaceLab resets the
        bottleneck when pretraining ends; measured here, keeping it wins)."""
        init, reset = Path(self.settings.init), self.settings.reset
        if reset not in INIT_RESETS:
            raise DeepfakeError(f"unknown --reset {reset!r}: one of {', '.join(INIT_RESETS)}")
        if init.resolve() == self.settings.model_dir.resolve():
            raise DeepfakeError("--init names the model folder itself: it must be another, pretrained model")
        model, config, _, metadata = load_model(init, device=str(self.device), expect=wanted)
        if layout is not None and layout != config.layout:
            raise DeepfakeError(f"the model {init} has the {config.layout.upper()} layout; a model started from it "
                                f"keeps it: drop --layout (or pass {config.layout})")
        fresh = build_model(config).to(self.device)
        for name in INIT_RESETS[reset][config.layout]:
            model.get_submodule(name).load_state_dict(fresh.get_submodule(name).state_dict())
        state = json.loads(metadata.get("state", "{}")) if metadata.get("state") else {}
        self.init_record = {"model": str(init.resolve()), "model_id": state.get("model_id"),
                            "iteration": state.get("iteration"), "pretrain": bool(state.get("pretrain")), "reset": reset}
        if not state.get("pretrain"):
            self.events.warning(f"{init} was not made by `deepfake pretrain` (it is a pair's model): starting from it anyway")
        self.events.log(f"starting from {init} (iteration {state.get('iteration')}, reset: {reset})")
        return config, model, None

    def _check_same(self, previous: dict[str, Any] | None, key: str, asked: Any, default: Any) -> Any:
        """A new model takes what was asked (or the default); a resumed one keeps its own, and
        asking for another is refused: its random streams and held-out split are already fixed,
        and its record must stay true."""
        if previous is None:
            return default if asked is None else asked
        own = previous.get(key, default)
        if asked is not None and asked != own:
            raise DeepfakeError(f"the model in {self.settings.model_dir} was started with --{key} {own}; a resumed "
                                f"model keeps it: drop --{key} (or pass {own}), or train a new model in another folder")
        return own

    def _restore(self, extras: dict[str, torch.Tensor], metadata: dict[str, str], state: dict[str, Any]) -> None:
        asked_a, asked_b = self.state.facesets_a, self.state.facesets_b
        known = {f.name for f in dataclasses.fields(TrainState)}
        self.state = TrainState(**{k: v for k, v in state.items() if k in known})
        self.state.recipe = self.recipe.to_json()
        if not self.state.runs:  # a model of an earlier version: its first stretch is what it recorded
            self.state.runs = [{"from": 0, "facesets_a": self.state.facesets_a, "facesets_b": self.state.facesets_b}]
        if (asked_a, asked_b) != (self.state.facesets_a, self.state.facesets_b):
            self.events.warning(f"resuming at iteration {self.state.iteration} with other facesets than the last run "
                                "(recorded in state.json 'runs'; swap and evaluate now use these)")
            self.state.runs.append({"from": self.state.iteration, "facesets_a": asked_a, "facesets_b": asked_b})
            self.state.facesets_a, self.state.facesets_b = asked_a, asked_b
        if self.state.model_id is None:
            self.state.model_id = uuid.uuid4().hex
        names = [name for name, _ in self.model.named_parameters()]
        where = model_folder.weights_path(self.settings.model_dir)
        if self.recipe.ema > 0:  # the loaded weights are the average; the raw ones continue training
            try:
                raw = {name: extras[f"train.{name}"] for name in self.model.state_dict()}
            except KeyError as e:
                raise DeepfakeError(f"{where} records an averaged model but lacks its raw weights ({e}): it cannot "
                                    "be resumed; swap with it as it is, or train a new model in another folder") from None
            self.ema_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(raw)
        try:
            optim_state: dict[str, Any] = {"state": {}, "param_groups": json.loads(metadata["param_groups"])}
            for i, name in enumerate(names):
                if f"optim.{name}.exp_avg" in extras:
                    optim_state["state"][i] = {key: extras[f"optim.{name}.{key}"].to(self.device)
                                               for key in ("step", "exp_avg", "exp_avg_sq")}
                    optim_state["state"][i]["step"] = optim_state["state"][i]["step"].cpu()
            self.optimizer.load_state_dict(optim_state)
            sample_state, augment_state = extras["rng.sample.0"], extras["rng.augment.0"]
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise DeepfakeError(f"{where} holds weights but not a checkpoint this version can resume "
                                f"(its optimizer or random state is missing or malformed: {e!s:.120}); swap with it "
                                "as it is, or train a new model in another folder") from None
        if self.rank == 0:
            self.sample_rng.set_state(sample_state)
            self.augment_rng.set_state(augment_state)
        else:  # only rank 0's streams are saved; the others restart theirs, distinct per rank
            self.sample_rng.manual_seed(self.state.seed * 1000 + self.rank + 7919 * self.state.iteration)
            self.augment_rng.manual_seed(self.state.seed * 1000 + 500 + self.rank + 7919 * self.state.iteration)

    def save(self) -> None:
        if self.rank != 0:
            return
        extras: dict[str, torch.Tensor] = {}
        names = {id(p): name for name, p in self.model.named_parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for key, value in self.optimizer.state.get(p, {}).items():
                    extras[f"optim.{names[id(p)]}.{key}"] = value.detach().cpu().contiguous()
        extras["rng.sample.0"] = self.sample_rng.get_state()
        extras["rng.augment.0"] = self.augment_rng.get_state().cpu()
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": list(range(len(g["params"])))}
                  for g in self.optimizer.param_groups]
        state_json = json.dumps(asdict(self.state))
        saved = self.model
        if self.ema_model is not None:
            extras |= {f"train.{name}": t for name, t in self.model.state_dict().items()}
            saved = self.ema_model
        save_model(self.settings.model_dir, saved, self.config, extra_tensors=extras,
                   metadata={"state": state_json, "param_groups": json.dumps(groups)})
        self.saved_iteration = self.state.iteration
        write_atomic(model_folder.state_path(self.settings.model_dir), (json.dumps(asdict(self.state), indent=1) + "\n").encode())

    # -- batch size -----------------------------------------------------------------------------
    def _batch_size(self) -> int:
        if self.settings.batch_size:
            return self.settings.batch_size
        if self.state.iteration > 0:
            return self.state.batch_size
        if self.device.type != "cuda":
            return 16
        return self._largest_batch()

    def _largest_batch(self) -> int:
        """Halve from 128 until a full training step fits in GPU memory."""
        batch = 128
        while batch > 1:
            try:
                self._step(batch, dry_run=True)
                torch.cuda.synchronize()
                self.events.log(f"batch size {batch} per identity fits on {torch.cuda.get_device_name(self.device)}")
                return batch
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                batch //= 2
        raise DeepfakeError("not even a batch of 1 fits in GPU memory: choose a smaller preset")

    # -- the loop -------------------------------------------------------------------------------
    def _sample(self, data: tuple[torch.Tensor, torch.Tensor], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces float in [0, 1] and maps in {0, 1} of a random batch, on the device."""
        faces, maps = data
        index = torch.randint(len(faces), (batch,), generator=self.sample_rng).to(self.device)
        return faces.index_select(0, index).float() / 255, maps.index_select(0, index).float()

    def _step(self, batch: int, dry_run: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        faces_a, maps_a = self._sample(self.data_a, batch)
        faces_b, maps_b = self._sample(self.data_b, batch)
        recipe = self.recipe
        warp = recipe.warped(self.state.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = recipe.learning_rate_at(self.state.iteration, batch * self.world)
        in_a, target_a, tmaps_a = augment(faces_a, maps_a, recipe.augment, self.augment_rng, warp)
        in_b, target_b, tmaps_b = augment(faces_b, maps_b, recipe.augment, self.augment_rng, warp)
        if self.channels_last:
            in_a, in_b = in_a.contiguous(memory_format=torch.channels_last), in_b.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            rgb_a, mask_a, rgb_b, mask_b, latent = (self.step_module(in_a, in_b) if not dry_run else
                                                    TrainStep(self.model)(in_a, in_b))
        loss_a = identity_loss(rgb_a, mask_a, target_a, tmaps_a, recipe)
        loss_b = identity_loss(rgb_b, mask_b, target_b, tmaps_b, recipe)
        if recipe.latent_match:  # shared by both sides; halved so the logged sum counts it once
            match = recipe.latent_match * latent_match_loss(latent[:batch], latent[batch:]) / 2
            loss_a, loss_b = loss_a + match, loss_b + match
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_a + loss_b).backward()
        if dry_run:
            self.optimizer.zero_grad(set_to_none=True)
            return loss_a.detach(), loss_b.detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema_model is not None:
            decay = recipe.ema_decay_at(self.state.iteration)
            with torch.no_grad():
                torch._foreach_lerp_(list(self.ema_model.parameters()), list(self.model.parameters()), 1 - decay)
        return loss_a.detach(), loss_b.detach()

    def run(self) -> dict[str, Any]:
        total = self.settings.iterations
        batch = self.state.batch_size
        start_iteration = self.state.iteration
        if start_iteration >= total and self.rank == 0:
            self.events.log(f"the model is already at iteration {start_iteration} (--iterations {total}): "
                            "nothing to train; pass a larger --iterations to continue")
        if self.rank == 0:
            self.events.log(f"training {self.config.preset} ({self.config.resolution} px) on {self.device}: "
                            f"{len(self.train_a)} faces A, {len(self.train_b)} faces B, batch {batch} + {batch}"
                            f"{f' x {self.world} processes' if self.world > 1 else ''}, iterations {start_iteration} -> {total}")
            if not self.settings.pretrain:
                turned = uncovered_turns_warning(self.settings.facesets_a, self.settings.facesets_b)
                if turned is not None:
                    self.events.warning(turned)
        self.model.train()
        t0 = time.monotonic()
        sum_a = torch.zeros((), device=self.device)
        sum_b = torch.zeros((), device=self.device)
        n = 0
        try:
            while self.state.iteration < total:
                loss_a, loss_b = self._step(batch)
                sum_a += loss_a
                sum_b += loss_b
                n += 1
                self.state.iteration += 1
                it = self.state.iteration
                if it % LOG_EVERY == 0 or it == total:
                    la, lb = (sum_a / n).item(), (sum_b / n).item()  # the only host sync
                    sum_a.zero_(), sum_b.zero_()
                    n = 0
                    self.state.losses.append([it, round(la, 6), round(lb, 6)])
                    rate = (it - start_iteration) * batch * 2 * self.world / (time.monotonic() - t0)
                    if self.rank == 0:
                        self.events.progress("train", it, total, loss_a=round(la, 5), loss_b=round(lb, 5),
                                             samples_per_s=round(rate, 1))
                if it % self.settings.preview_every == 0 or it == total:
                    self.write_preview()
                if it % self.settings.save_every == 0:
                    self.save()
        finally:
            self.save()
            if self.state.iteration == total:
                self.write_preview()
        seconds = time.monotonic() - t0
        done = self.state.iteration - start_iteration
        summary = {"model": str(self.settings.model_dir), "iteration": self.state.iteration,
                   "loss_a": self.state.losses[-1][1] if self.state.losses else None,
                   "loss_b": self.state.losses[-1][2] if self.state.losses else None,
                   "samples_per_s": round(done * batch * 2 * self.world / seconds, 2) if seconds > 0 and done else None}
        if self.rank == 0:
            self.events.result([str(model_folder.weights_path(self.settings.model_dir)),
                                str(model_folder.preview_path(self.settings.model_dir))], **summary)
        if self.world > 1:
            dist.destroy_process_group()
        return summary

    # -- previews and held-out quality ---------------------------------------------------------------
    def _preview_faces(self, held: IdentityFaces, train: IdentityFaces) -> np.ndarray:
        pool = held if len(held) >= PREVIEW_FACES else train
        index = np.linspace(0, len(pool) - 1, PREVIEW_FACES).round().astype(int)
        return pool.faces[index]

    @torch.no_grad()
    def write_preview(self) -> None:
        """Rows: A, A rebuilt, A as B, B, B rebuilt, B as A (held-out faces when there are any)."""
        if self.rank != 0:
            return
        model = self.ema_model or self.model  # what a swap with the saved model gives
        model.eval()
        rows = []
        for faces, own, other in ((self._preview_faces(self.held_a, self.train_a), "a", "b"),
                                  (self._preview_faces(self.held_b, self.train_b), "b", "a")):
            x = torch.from_numpy(faces).to(self.device).permute(0, 3, 1, 2).float() / 255
            latent = model.encode(x)
            rows += [x, model.decode(latent, own)[0], model.decode(latent, other)[0]]
        self.model.train()
        grid = torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)
        image = (grid.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        if self.config.resolution < 128:  # 64 px faces are too small to judge by eye
            image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_atomic(model_folder.preview_path(self.settings.model_dir), png.tobytes())
        self.events.image("preview", str(model_folder.preview_path(self.settings.model_dir)))


def _autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision setting on a device (None: plain fp32)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise DeepfakeError(f"unknown precision {precision!r}: auto, fp32 or bf16")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "mps":
        return None  # autocast is a CUDA (and CPU) speed path here; the Trainer logs the fallback
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16  # pre-Ampere cards: fp16 with a gradient scaler
    return torch.bfloat16


def _checkpoint_state(metadata: dict[str, str]) -> dict[str, Any]:
    """The training state a checkpoint's metadata holds, validated enough to resume from."""
    try:
        state = json.loads(metadata["state"])
        if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
            raise ValueError("no iteration")
    except (KeyError, ValueError, RecursionError):
        raise DeepfakeError("the model's checkpoint has no readable training state: it cannot be resumed; "
                            "swap with it as it is, or train a new model in another folder") from None
    return state


# What `--reset` draws anew in a model started from a pretrained one, per layout. "bottleneck" is
# DeepFaceLab's choice when pretraining ends: DF's dense latent (and its upscale), LIAE's shared
# inter block; the convolutions, which hold what faces look like, are kept.
INIT_RESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "none": {"df": (), "liae": ()},
    "bottleneck": {"df": ("encoder.to_latent", "encoder.from_latent", "encoder.up"), "liae": ("inter.ab",)},
}

OWN_FILES = {*model_folder.FILES, LOCK_NAME}


def model_folder_state(folder: Path, events: Events) -> str:
    """"model" (resume it) or "new" (nothing trained is there), after repairing what a killed
    first checkpoint or a lost config.json left; anything else is refused, since training
    into it would replace trained weights or mix with someone's files."""
    if not folder.is_dir():
        return "new"
    config, weights = model_folder.config_path(folder), model_folder.weights_path(folder)
    if weights.is_file() and not config.is_file():
        restored = config_from_weights(folder)
        if restored is None:
            raise DeepfakeError(f"{folder} holds trained weights but no config.json (and the weights do not record "
                                "it): restore config.json, or choose another folder for a new model")
        write_atomic(config, restored)
        events.warning(f"{config} was missing: restored from the weights' own record")
    if config.is_file() and weights.is_file():
        return "model"
    if config.is_file():
        state = model_folder.state_path(folder)
        if state.is_file():
            raise DeepfakeError(f"{weights} is missing but {state} records training: the trained weights are gone; "
                                "restore them, or choose another folder for a new model")
        events.log(f"{folder} holds only the config.json of a first checkpoint that never finished: starting anew")
        config.unlink()
        return "new"
    refuse_foreign_folder(folder)
    return "new"


def refuse_foreign_folder(folder: Path) -> None:
    """A folder holding files that are not a model's is someone's: never trained into (checked
    before anything, the lock included, is written there)."""
    if not folder.is_dir() or model_folder.has_config(folder) or model_folder.weights_path(folder).is_file():
        return
    strangers = sorted(p.name for p in folder.iterdir() if p.name not in OWN_FILES and not p.name.startswith("."))
    if strangers:
        raise DeepfakeError(f"{folder} is not a model folder (it holds {', '.join(strangers[:3])}"
                            f"{'...' if len(strangers) > 3 else ''}): choose an empty or new folder for the model")


def estimated_checkpoint_bytes(config: ModelConfig) -> int:
    """Weights and Adam's two moments in float32, twice (the new file beside the old one)."""
    with torch.device("meta"):
        return param_count(build_model(config)) * 4 * 3 * 2


def pretrain(facesets: list[Path], settings: TrainSettings, events: Events) -> dict[str, Any]:
    """A generic model of many people: both sides of the autoencoder learn the whole pool, so
    its convolutions and dense layers know faces before they meet a pair (DeepFaceLab's
    pretraining on its generic faceset). Pairs start from it with `train --init`."""
    if len(facesets) < 2:
        raise DeepfakeError("pretraining needs the facesets of several people (pass --faceset more than once)")
    return train(dataclasses.replace(settings, facesets_a=list(facesets), facesets_b=list(facesets), pretrain=True,
                                     init=None), events)


def train(settings: TrainSettings, events: Events) -> dict[str, Any]:
    if settings.iterations <= 0 or settings.save_every <= 0 or settings.preview_every <= 0:
        raise DeepfakeError("--iterations, --save-every and --preview-every must be positive")
    same = {str(Path(f).resolve()) for f in settings.facesets_a} & {str(Path(f).resolve()) for f in settings.facesets_b}
    if same and not settings.pretrain:
        raise DeepfakeError(f"{sorted(same)[0]} is given as both A and B: A is the face in the footage, B the new face")
    folder = settings.model_dir
    refuse_foreign_folder(folder)
    ensure_writable(folder)
    # Under torchrun only rank 0 writes the folder, so only it holds the lock.
    lock = folder_lock(folder, f"the model in {folder}") if int(os.environ.get("RANK", "0")) == 0 else nullcontext()
    with lock:
        remove_stale_temps(folder)
        if settings.preset in PRESETS:
            ensure_free_space(folder, estimated_checkpoint_bytes(PRESETS[settings.preset]), "the model's checkpoints")
        trainer = Trainer(settings, events)
        try:
            return trainer.run()
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(exc, f"the model in {folder}",
                                f"the last complete checkpoint (iteration {trainer.saved_iteration}) is kept: "
                                "free some space and rerun to resume") from None
            raise


