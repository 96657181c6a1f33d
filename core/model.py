"""The face-swap autoencoder and its model folder.

Architecture (the structure of faceswap's "original" and DeepFaceLab's "DF"; our own code): one
encoder shared by both identities, so it must learn a face description (pose, expression,
lighting) that fits either person, and one decoder per identity that paints that description as
its own person. Swapping is encoding a frame of A and decoding it with B's decoder.

The model folder is something users keep and exchange, so loading it must never run code: the
weights are safetensors (a JSON header plus raw bytes), the architecture is plain JSON, and
nothing here calls pickle or `torch.load`. Every check that can be made from the headers (format,
version, tensor names and shapes) is made before a byte of weights is read or a tensor allocated,
so a lying or hostile folder costs an error message, not memory or a crash.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from core.atomic import write_atomic
from core.errors import DeepfakeError
from core.model_folder import CONFIG, WEIGHTS

FORMAT = "blender-deepfake-model"
FORMAT_VERSION = 1
MODEL_PREFIX = "model."
IDENTITIES = ("a", "b")
# Keys of the safetensors metadata that are ours; the caller's keys go beside them. "config" is
# config.json's content: a folder whose config.json went missing can be restored from it.
_RESERVED_METADATA = ("format", "format_version", "config")
# Bounds that keep a stranger's config.json from asking for terabytes before any check runs.
_MAX_RESOLUTION = 1024
_MAX_CHANNELS = 4096
_MAX_LATENT = 16384


class ModelError(DeepfakeError):
    """A model folder that is missing, of another format or version, inconsistent or not ours."""


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: everything needed to rebuild the network before loading its weights.

    The encoder has one strided 5x5 conv per `encoder_channels` entry (each halves the size), a
    dense bottleneck of `latent` units, and a dense layer back to the last conv's spatial size.
    `decoder_channels[i]` is the output of the i-th 2x upscale block; the first one lives in the
    shared encoder (as in faceswap "original"), the rest in each decoder. So both tuples have the
    same length and the output comes back to `resolution`.
    """

    preset: str
    resolution: int
    encoder_channels: tuple[int, ...]
    latent: int
    decoder_channels: tuple[int, ...]
    format_version: int = FORMAT_VERSION
    # "df": a decoder per identity (faceswap "original", DeepFaceLab DF). "liae": one decoder
    # shared by both people, identity carried by per-person dense layers (DeepFaceLab LIAE):
    # what ties A's code for "mouth open" to the face B is painted with.
    layout: str = "df"

    @property
    def bottleneck_size(self) -> int:
        """Side of the encoder's last conv output, and of the dense layer's spatial tensor."""
        return self.resolution >> len(self.encoder_channels)

    def validate(self) -> None:
        """Raise ModelError (one line) when the numbers cannot describe a working network."""
        if self.preset not in PRESETS:
            raise ModelError(f"unknown model preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.layout not in LAYOUTS:
            raise ModelError(f"unknown model layout {self.layout!r}; known: {', '.join(LAYOUTS)}")
        if self.format_version != FORMAT_VERSION:
            raise ModelError(f"model format version {self.format_version} is not supported "
                             f"(this version reads {FORMAT_VERSION})")
        if not 16 <= self.resolution <= _MAX_RESOLUTION:
            raise ModelError(f"model resolution {self.resolution} is outside 16..{_MAX_RESOLUTION}")
        if not self.encoder_channels or len(self.encoder_channels) != len(self.decoder_channels):
            raise ModelError(f"model channel plan needs as many decoder as encoder entries "
                             f"(encoder {list(self.encoder_channels)}, decoder {list(self.decoder_channels)})")
        for c in (*self.encoder_channels, *self.decoder_channels):
            if not 1 <= c <= _MAX_CHANNELS:
                raise ModelError(f"model channel count {c} is outside 1..{_MAX_CHANNELS}")
        if not 1 <= self.latent <= _MAX_LATENT:
            raise ModelError(f"model latent size {self.latent} is outside 1..{_MAX_LATENT}")
        n = len(self.encoder_channels)
        side = self.resolution >> n
        if side < 2 or side << n != self.resolution:
            raise ModelError(f"model resolution {self.resolution} does not match the channel plan: "
                             f"{n} halvings need a multiple of {1 << n} px, at least {2 << n}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder_channels"] = list(self.encoder_channels)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_json(cls, data: Any, where: str = "model config") -> "ModelConfig":
        """Parse and validate; every problem is a one-line ModelError that starts with `where`."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fields = {"preset": str, "resolution": int, "encoder_channels": list, "latent": int,
                  "decoder_channels": list, "format_version": int, "layout": str}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ModelError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        missing = [k for k in fields if k not in data and k not in ("format_version", "layout")]
        if missing:
            raise ModelError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
        for key, kind in fields.items():
            if key in data and not _is(data[key], kind):
                raise ModelError(f"{where}: {key!r} should be {kind.__name__}, got {data[key]!r}")
        for key in ("encoder_channels", "decoder_channels"):
            if not all(_is(v, int) for v in data[key]):
                raise ModelError(f"{where}: {key!r} should be a list of integers, got {data[key]!r}")
        config = cls(preset=data["preset"], resolution=data["resolution"],
                     encoder_channels=tuple(data["encoder_channels"]), latent=data["latent"],
                     decoder_channels=tuple(data["decoder_channels"]),
                     format_version=data.get("format_version", FORMAT_VERSION),
                     layout=data.get("layout", "df"))  # folders from before the layout option are DF
        try:
            config.validate()
        except ModelError as e:
            raise ModelError(f"{where}: {e}") from None
        return config

    def describe(self) -> str:
        return f"preset {self.preset!r} ({self.resolution} px)"


def _is(value: Any, kind: type) -> bool:
    """isinstance that refuses bool as int (JSON true is not a channel count)."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


LAYOUTS = ("df", "liae")

PRESETS: dict[str, ModelConfig] = {
    # 64 px, 4x4 bottleneck: CPU tests and quick trials. Sized so 16 + 16 faces train at >= 1 it/s
    # on 2 CPU cores (the encoder's width costs the most there: every face goes through it).
    "small": ModelConfig("small", 64, (32, 64, 128, 256), 256, (256, 128, 64, 32)),
    # 128 px, 8x8 bottleneck (res/16): the default on one GPU.
    "standard": ModelConfig("standard", 128, (64, 128, 256, 512), 512, (512, 256, 128, 64)),
    # 256 px, wider, one more halving so the dense layers stay at 8x8 (res/16 would make each
    # of them four times larger for no gain in what the latent can carry).
    "large": ModelConfig("large", 256, (96, 192, 384, 768, 768), 768, (768, 384, 192, 128, 64)),
}


# --------------------------------------------------------------------------------------------
# Network


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace=True)


def _init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """He init for the LeakyReLU that follows; zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=0.1, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return conv


class Down(nn.Module):
    """Strided 5x5 conv: halves the size."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _init_conv(nn.Conv2d(cin, cout, 5, stride=2, padding=2))
        self.act = _leaky()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class Up(nn.Module):
    """3x3 conv to 4x the channels, PixelShuffle(2): doubles the size without the checkerboard
    of a transposed conv. ICNR init (the 4 sub-pixels start equal) removes it at step 0 too."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        with torch.no_grad():
            sub = torch.empty(cout, cin, 3, 3)
            nn.init.kaiming_uniform_(sub, a=0.1, nonlinearity="leaky_relu")
            self.conv.weight.copy_(sub.repeat_interleave(4, dim=0))
            nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(2)
        self.act = _leaky()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shuffle(self.conv(x)))


class Residual(nn.Module):
    """Two 3x3 convs added back to the input (DeepFaceLab's decoder blocks): detail without
    losing the gradient path."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = _init_conv(nn.Conv2d(c, c, 3, padding=1))
        self.conv2 = _init_conv(nn.Conv2d(c, c, 3, padding=1))
        self.act1 = _leaky()
        self.act2 = _leaky()

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(x + self.conv2(self.act1(self.conv1(x))))


class Decoder(nn.Module):
    """One identity: upscale blocks (a residual block after each but the last, full-size one,
    where it would cost the most), then a 1x1 conv to RGB + mask (as DeepFaceLab: the upscale's
    3x3 conv already sees the neighbourhood; a 5x5 here cost 10 % of a CPU step)."""

    def __init__(self, config: ModelConfig, inputs: int | None = None):
        super().__init__()
        chans = (inputs or config.decoder_channels[0], *config.decoder_channels[1:])
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans, chans[1:])):
            blocks.append(Up(a, b))
            if i < len(chans) - 2:
                blocks.append(Residual(b))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(chans[-1], 4, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.sigmoid(self.out(self.blocks(x))).float()
        return y[:, :3], y[:, 3:]


class Features(nn.Module):
    """LIAE's shared encoder: the convs only; the dense layers belong to the inter blocks."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        chans = (3, *config.encoder_channels)
        self.down = nn.Sequential(*(Down(a, b) for a, b in zip(chans, chans[1:])))

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x).flatten(1)


class Inter(nn.Module):
    """Dense latent -> dense spatial tensor -> one upscale: the encoder's tail in the DF layout,
    one per role in LIAE ("ab" for everyone, "b" for B's identity)."""

    def __init__(self, config: ModelConfig, convs: nn.Module | None = None):
        super().__init__()
        if convs is not None:  # registered first: the tensor order (and init order) of DF folders
            self.down = convs
        side, last = config.bottleneck_size, config.encoder_channels[-1]
        self.shape = (last, side, side)
        self.to_latent = nn.Linear(last * side * side, config.latent)
        self.from_latent = nn.Linear(config.latent, last * side * side)
        self.up = Up(last, config.decoder_channels[0])

    def forward(self, features: Tensor) -> Tensor:
        return self.up(self.from_latent(self.to_latent(features)).reshape(-1, *self.shape))


class Encoder(Inter):
    """DF's shared encoder: the convs, then the dense tail both decoders read (the tensor names
    are those of every DF model folder: down.*, to_latent, from_latent, up)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, convs=Features(config).down)

    def forward(self, x: Tensor) -> Tensor:
        # flatten, not view: under channels_last the conv output is not contiguous.
        return super().forward(self.down(x).flatten(1))


class FaceSwapModel(nn.Module):
    """Shared encoder + one decoder per identity (DF) or shared encoder and decoder (LIAE). Inputs and outputs are float RGB in [0, 1];
    under autocast the outputs are still float32, so losses run at full precision."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        if config.layout == "df":
            self.encoder = Encoder(config)
            self.decoders = nn.ModuleDict({name: Decoder(config) for name in IDENTITIES})
        else:
            self.encoder = Features(config)
            self.inter = nn.ModuleDict({"ab": Inter(config), "b": Inter(config)})
            self.decoder = Decoder(config, inputs=2 * config.decoder_channels[0])

    def encode(self, x: Tensor) -> Tensor:
        """[B,3,H,W] -> the shared representation both decoders read."""
        if x.shape[-2:] != (self.config.resolution,) * 2:
            raise ModelError(f"model expects {self.config.resolution} px faces, got {tuple(x.shape[-2:])}")
        return self.encoder(x)

    def decode(self, latent: Tensor, identity: str) -> tuple[Tensor, Tensor]:
        """-> (rgb [B,3,H,W], mask [B,1,H,W]), both in [0, 1].

        LIAE (as DeepFaceLab trains it): A is painted from its shared code twice, B from B's own
        code beside the shared one, so swapping to B is A's shared code (pose, expression) beside
        what B's inter block makes of A's face."""
        if identity not in IDENTITIES:
            raise ModelError(f"unknown identity {identity!r}; the model has {', '.join(IDENTITIES)}")
        if self.config.layout == "df":
            return self.decoders[identity](latent)
        shared = self.inter["ab"](latent)
        own = shared if identity == "a" else self.inter["b"](latent)
        return self.decoder(torch.cat([own, shared], dim=1))

    def forward(self, x: Tensor, identity: str) -> tuple[Tensor, Tensor]:
        return self.decode(self.encode(x), identity)


def build_model(config: ModelConfig) -> FaceSwapModel:
    return FaceSwapModel(config)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Model folder


def save_model(folder: str | Path, model: nn.Module, config: ModelConfig,
               extra_tensors: dict[str, Tensor] | None = None,
               metadata: dict[str, str] | None = None) -> None:
    """Write model.safetensors, then config.json, each atomically.

    Weights, optimizer state, RNG states and the caller's metadata share one file so that a
    checkpoint is one rename: a kill at any moment leaves the previous checkpoint whole. The
    weights go first and carry config.json's content in their metadata: a folder with a
    config.json always has weights (a kill during the first checkpoint leaves no half model
    that blocks a rerun), and a config.json lost later can be restored from the weights
    (`config_from_weights`). config.json is rewritten only when it changes; should a kill fall
    between the two renames of a changed architecture, load_model's shape check names the
    disagreement instead of loading garbage.
    """
    model = unwrap(model)
    if model.config != config:
        raise ValueError(f"save_model: the model was built for {model.config}, not {config}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata or {})
    extra_tensors = dict(extra_tensors or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; {key!r} -> {type(value).__name__}")
        if key in _RESERVED_METADATA:
            raise ValueError(f"metadata key {key!r} is reserved")
    tensors: dict[str, Tensor] = {}
    for name, tensor in extra_tensors.items():
        if name.startswith(MODEL_PREFIX):
            raise ValueError(f"extra tensor {name!r} collides with the model's own 'model.*' names")
        tensors[name] = _storable(tensor)
    for name, tensor in model.state_dict().items():
        tensors[MODEL_PREFIX + name] = _storable(tensor)
    config_json = {"format": FORMAT, "format_version": config.format_version, **config.to_json(),
                   "param_count": param_count(model)}
    config_bytes = (json.dumps(config_json, indent=2) + "\n").encode()
    metadata.update(format=FORMAT, format_version=str(config.format_version), config=config_bytes.decode())
    write_atomic(folder / WEIGHTS, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    config_path = folder / CONFIG
    if not config_path.is_file() or config_path.read_bytes() != config_bytes:
        write_atomic(config_path, lambda tmp: tmp.write_bytes(config_bytes))


def unwrap(model: nn.Module) -> FaceSwapModel:
    """The FaceSwapModel inside torch.compile / DistributedDataParallel wrappers, whose
    state_dict keys carry '_orig_mod.' / 'module.' prefixes that must not reach the file."""
    while not isinstance(model, FaceSwapModel):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"expected a FaceSwapModel (possibly compiled or DDP-wrapped), got {type(model).__name__}")
        model = inner
    return model


def _storable(tensor: Tensor) -> Tensor:
    """safetensors wants dense, contiguous, unshared CPU tensors (channels_last weights are not
    contiguous; a caller's tensor may be a view into a larger one). One copy does all three."""
    out = torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device="cpu")
    return out.copy_(tensor.detach())


def config_from_weights(folder: str | Path) -> bytes | None:
    """config.json's content as the weights recorded it (header only; None when the weights
    are unreadable or predate the record): what restores a folder whose config.json was lost."""
    path = Path(folder) / WEIGHTS
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            text = (f.metadata() or {}).get("config")
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return text.encode()


def load_config(folder: str | Path) -> ModelConfig:
    """Read and validate config.json alone (cheap: no weights are touched)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    path = folder / CONFIG
    if not path.is_file():
        raise ModelError(f"{path} is missing: {folder} is not a model folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelError(f"{path} is not valid JSON: {_one_line(e)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"{path} is not a {FORMAT} config (format: {found!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path} has format version {version!r}; this version reads {FORMAT_VERSION}")
    data = {k: v for k, v in data.items() if k not in ("format", "param_count")}
    return ModelConfig.from_json(data, where=str(path))


def load_model(folder: str | Path, device: str | torch.device = "cpu", expect: ModelConfig | None = None
               ) -> tuple[FaceSwapModel, ModelConfig, dict[str, Tensor], dict[str, str]]:
    """Load a model folder: (model on `device`, its config, extra tensors on the CPU, metadata).

    Extras stay on the CPU because RNG states must; an optimizer's load_state_dict moves its own
    state to the parameters' device. `expect` (what this run asks for) must agree on preset and
    resolution; the rest of the architecture always comes from the folder.
    """
    folder = Path(folder)
    config = load_config(folder)
    if expect is not None and (expect.preset, expect.resolution) != (config.preset, config.resolution):
        raise ModelError(f"model at {folder} is {config.describe()}; this run asks for {expect.describe()}")
    path = folder / WEIGHTS
    if not path.is_file():
        raise ModelError(f"{path} is missing: the model at {folder} has no weights")
    with torch.device("meta"):
        model = FaceSwapModel(config)   # shapes only: nothing allocated or initialised yet
    expected = {MODEL_PREFIX + k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            _check_header(path, f, expected, metadata)
            model = model.to_empty(device=device)
            state = {k[len(MODEL_PREFIX):]: f.get_tensor(k) for k in expected}
            # get_tensor maps the file; copies let it go (a mapped file cannot be replaced on
            # Windows, and the next checkpoint replaces it).
            extras = {k: f.get_tensor(k).clone() for k in f.keys() if not k.startswith(MODEL_PREFIX)}
    except ModelError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path} is not a readable safetensors file ({_one_line(e)})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:   # the header check makes this unreachable; keep the message short
        raise ModelError(f"{path} does not fit {CONFIG}: {_one_line(e)}") from None
    del state
    # A diverged training run saves NaNs; every output of such a model is garbage (an empty mask,
    # a black face), so it is refused by name rather than swapped with.
    bad = next((k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ModelError(f"{path}: tensor {MODEL_PREFIX + bad!r} holds NaN or infinite values (the training "
                         "diverged): use an earlier copy of the model or train it anew")
    for key in _RESERVED_METADATA:
        metadata.pop(key, None)
    return model, config, extras, metadata


def _check_header(path: Path, f: Any, expected: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> None:
    """Names and shapes from the header against the architecture config.json describes, before
    any tensor is read: the first disagreement is the message."""
    if metadata.get("format", FORMAT) != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} weights file (format: {metadata['format']!r})")
    if metadata.get("format_version", str(FORMAT_VERSION)) != str(FORMAT_VERSION):
        raise ModelError(f"{path} has format version {metadata['format_version']!r}; "
                         f"this version reads {FORMAT_VERSION}")
    names = set(f.keys())
    for name, shape in expected.items():
        if name not in names:
            raise ModelError(f"{path} lacks tensor {name!r} {list(shape)} that {CONFIG} describes")
        found = tuple(f.get_slice(name).get_shape())
        if found != shape:
            raise ModelError(f"{path}: tensor {name!r} is {list(found)} but {CONFIG} describes {list(shape)}")
        dtype = f.get_slice(name).get_dtype()
        if dtype not in ("F32", "F16", "BF16", "F64"):
            raise ModelError(f"{path}: tensor {name!r} has dtype {dtype}, not a float type")
    unexpected = sorted(n for n in names if n.startswith(MODEL_PREFIX) and n not in expected)
    if unexpected:
        raise ModelError(f"{path} holds tensor {unexpected[0]!r} that {CONFIG} does not describe")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["ModelError", "ModelConfig", "PRESETS", "LAYOUTS", "FaceSwapModel", "build_model", "param_count",
           "save_model", "load_config", "load_model", "unwrap", "config_from_weights"]
