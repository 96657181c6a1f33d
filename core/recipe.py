"""How a model is trained: optimiser, loss weights and augmentation, as one record.

A recipe is fixed when a model is made and stored in its training state, so a resumed model
trains on exactly as it started (resume stays bit-identical) and a model folder says how it was
made. `RECIPES` holds the named ones: "v1" is what every model before recipes were recorded was
trained with; "v2" (Adam betas (0.9, 0.999), the rate scaled with the batch, the eyes-and-mouth
priority) is an option: benchmarks/convergence.py measured it better on one pair and worse on the
other; "v3" is v1 at four times the learning rate, the default: it won identity and rebuilds on
both pairs and lost one pair's landmark error (docs/TRAINING.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from core.augment import AugmentSettings
from core.errors import DeepfakeError

REFERENCE_BATCH = 16  # the batch the learning rate is given for


@dataclass(frozen=True)
class Recipe:
    name: str = "v2"
    learning_rate: float = 5e-5  # at REFERENCE_BATCH
    # Scale the rate with the square root of the batch (Adam's rule of thumb): on CUDA the trainer
    # may pick a batch of 128, whose steps are better estimates and can be longer.
    scale_with_batch: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0  # iterations of linear learning-rate warm-up
    # Loss weight of the eyes and mouth in the pixel-and-structure map (the face hull is 1).
    eye_mouth_weight: float = 3.0
    # DeepFaceLab's eyes-and-inner-mouth priority: an extra L1 on those pixels only, in units of
    # the hull's L1 weight. A mouth is a few per cent of the crop, so without it a pixel loss
    # learns the mouth last.
    eye_mouth_priority: float = 30.0
    # A weight-free detail term: an L1 on the Laplacian pyramid's bands (core.losses.detail_loss),
    # in units of the hull's L1; 0: none.
    detail_weight: float = 0.0
    # Weight of a term that draws A's and B's codes into one distribution (core.losses.
    # latent_match_loss), in units of the hull's L1; 0: none. DF layout only.
    latent_match: float = 0.0
    # Every n-th step trains on unwarped inputs (Quick96 feeds every third batch unwarped); 0: never.
    unwarped_every: int = 0
    # Decay of an exponential moving average of the weights; 0: none. With one, the saved model
    # (what previews and swaps use) is the average, and the raw weights ride along for resuming.
    # The decay warms up as (1 + t) / (10 + t), so early checkpoints are not the random start.
    ema: float = 0.0
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    def learning_rate_at(self, iteration: int, batch: int) -> float:
        """The learning rate of step `iteration` (0-based) at this batch size."""
        lr = self.learning_rate * (math.sqrt(batch / REFERENCE_BATCH) if self.scale_with_batch else 1.0)
        if self.warmup > 0 and iteration < self.warmup:
            lr *= (iteration + 1) / self.warmup
        return lr

    def ema_decay_at(self, iteration: int) -> float:
        return min(self.ema, (1 + iteration) / (10 + iteration))

    def warped(self, iteration: int) -> bool:
        return not (self.unwarped_every > 0 and (iteration + 1) % self.unwarped_every == 0)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_json(cls, data: Any) -> "Recipe":
        """A recorded recipe; keys this version does not know are refused (the model would
        train differently from how it says it was made)."""
        if not isinstance(data, dict):
            raise DeepfakeError(f"the model's recorded recipe is not a JSON object: {data!r:.80}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        augment_known = {f.name for f in dataclasses.fields(AugmentSettings)}
        augment = data.get("augment", {})
        if not isinstance(augment, dict):
            raise DeepfakeError(f"the model's recorded recipe has a malformed 'augment': {augment!r:.80}")
        unknown += sorted(f"augment.{k}" for k in set(augment) - augment_known)
        if unknown:
            raise DeepfakeError(f"the model's recorded recipe has settings this version does not know "
                                f"({', '.join(unknown)}): it was made by a newer version")
        try:
            return cls(**{**data, "betas": tuple(data.get("betas", cls.betas)),
                          "augment": AugmentSettings(**augment)})
        except TypeError as e:
            raise DeepfakeError(f"the model's recorded recipe is malformed: {e}") from None


# What models were trained with before the recipe was recorded (faceswap's original trainer's
# optimiser; warp 2 % of the crop; eyes and mouth 3x).
V1 = Recipe(name="v1", betas=(0.5, 0.999), scale_with_batch=False, eye_mouth_priority=0.0)
V2 = Recipe()
# v1 at 2e-4: faceswap's and DeepFaceLab's 5e-5 is a rate for runs of 10^5 iterations and more; at
# the thousands a CPU (or an evening on a GPU) gives, four times that rate reached B's identity on
# both test pairs where 5e-5 did not. The rate is not scaled with the batch (unmeasured: a CUDA
# batch of 128 takes better-estimated steps at the same rate).
V3 = dataclasses.replace(V1, name="v3", learning_rate=2e-4)
RECIPES: dict[str, Recipe] = {"v1": V1, "v2": V2, "v3": V3}
# The rule is that a default wins on both pairs: v2 won on d18 and lost on hdtf; v3 won identity,
# rebuilds and hdtf's mouth on both and lost d18's landmark error (8.8 % against 7.0 %), a majority
# win taken because identity is the figure furthest from the bar.
DEFAULT = V3
