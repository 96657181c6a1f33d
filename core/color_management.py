"""Colour conversions between a source's pixels and the display-referred sRGB the detectors and
the network see.

Two layers:

* The fixed IEC 61966-2-1 formulas (`linear_to_srgb`, `srgb_to_linear`) and `to_display_uint8`,
  which extraction uses without a colour config (float frames are taken as linear Rec.709).
* `ColorConverter`: an OCIO conversion between a named colourspace of a config (Blender's own
  `config.ocio`, or the built-in ACES CG config) and that config's sRGB texture space. The swap
  converts the crop to the network's space and the network's output back to the source's own
  space, and composites there, so pixels outside the mask are never converted at all.

Numerics (measured with OCIO 2.6 on Blender 5.0's config and the built-in config, see
tests/test_color_management.py): OCIO's sRGB curve is unclamped, the power segment continues
above 1.0 and the linear segment continues below 0.0, so linear -> sRGB -> linear comes back within
~1e-6 for values in [-0.1, 1.6] (and ~1e-4 relative further up). That needs exact powers: OCIO's
default optimisation uses a fast pow approximation whose round trip error is 4e-5 (linear
Rec.709) to 1.9e-4 (Display P3), so processors are built without OPTIMIZATION_FAST_LOG_EXP_POW.
OCIO derives the sRGB curve from gamma 2.4 / offset 0.055, so its linear toe has slope 12.9232
instead of the IEC's rounded 12.92: it agrees with `linear_to_srgb` within 1e-5 on [0, 1].
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import PyOpenColorIO as ocio

from core.errors import DeepfakeError

# Ships inside every PyOpenColorIO >= 2.3 (our floor), so the default does not change with the
# installed OCIO version the way "ocio://default" does (2.6 points it at the v5.0.0 config).
BUILTIN_CONFIG = "cg-config-v2.1.0_aces-v1.3_ocio-v2.3"

# The network's space: the sRGB-encoded Rec.709 texture space, under the names configs give it.
# Blender: "sRGB" (display-referred, IEC piecewise curve); ACES CG configs: "sRGB - Texture"
# (v1/v2) and "sRGB Encoded Rec.709 (sRGB)" (v4+). Aliases resolve through OCIO.
NETWORK_SPACES = ("sRGB", "sRGB - Texture", "sRGB Encoded Rec.709 (sRGB)", "srgb_tx",
                  "Utility - sRGB - Texture")

# Blender names (case-folded) and the names the ACES CG configs use for the same encoding, so a
# strip's Blender colourspace also works with the built-in config.
_EQUIVALENTS: dict[str, tuple[str, ...]] = {
    "linear rec.709": ("Linear Rec.709 (sRGB)", "lin_rec709_srgb", "lin_rec709"),
    "linear": ("Linear Rec.709 (sRGB)", "lin_rec709_srgb", "lin_rec709"),
    "srgb": NETWORK_SPACES,
    "display p3": ("sRGB Encoded P3-D65 - Texture", "srgb_p3d65", "srgb_displayp3"),
    "linear dci-p3 d65": ("Linear P3-D65", "lin_p3d65"),
    "rec.1886": ("Gamma 2.4 Rec.709 - Texture", "g24_rec709"),
    "linear cie-xyz d65": ("CIE-XYZ-D65", "cie_xyz_d65"),
}
_DATA_NAMES = frozenset({"non-color", "non-colour data", "generic data", "raw", "utility - raw"})

# Blender's sRGB display encodings with a view transform (tone curve) baked in. Their pixels are
# already pictures made for an sRGB display, which is what the network wants, so they pass
# through. Converting them colourimetrically would unfold the tone curve: Filmic sRGB 0.9 becomes
# sRGB 1.40 and clips (the top ~20% of code values), and the LUT inverses are lossy (round trip
# of [0, 1] after the clip: 0.19 Filmic, 0.69 AgX Base, 0.78 ACES 1.3 sRGB).
VIEW_BAKED = frozenset({"Filmic sRGB", "AgX Base sRGB", "ACES 1.3 sRGB", "ACES 2.0 sRGB",
                        "Khronos PBR Neutral sRGB"})

_FLAGS = ocio.OptimizationFlags(
    int(ocio.OptimizationFlags.OPTIMIZATION_DEFAULT)
    & ~int(ocio.OptimizationFlags.OPTIMIZATION_FAST_LOG_EXP_POW)
)
# ExceptionMissingFile does not derive from ocio.Exception.
_OCIO_ERRORS = (ocio.Exception, ocio.ExceptionMissingFile)


class ColorError(DeepfakeError):
    """An OCIO config that cannot be read, or a colourspace it does not know."""


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The IEC 61966-2-1 sRGB encoding of linear values, clipped to [0, 1]."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """The IEC 61966-2-1 sRGB decoding (EOTF) of encoded values, clipped to [0, 1]."""
    x = np.clip(encoded, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def to_display_uint8(frame: np.ndarray, converter: ColorConverter | None = None) -> np.ndarray:
    """RGB uint8 sRGB from a frame as a source delivers it (uint8, uint16 or float32).

    Without a converter, float frames are taken as linear Rec.709 (the IEC formula); with one,
    the frame is in the converter's colourspace.
    """
    if converter is not None and not (converter.is_identity and frame.dtype == np.uint8):
        return np.rint(frame_to_network(frame, converter) * 255.0).astype(np.uint8)
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.floating):
        return np.round(linear_to_srgb(frame.astype(np.float32)) * 255.0).astype(np.uint8)
    raise TypeError(f"unsupported frame type {frame.dtype}")


@functools.lru_cache(maxsize=8)
def _load_config(config: str | None) -> ocio.Config:
    """Parse a config once per process (Blender's takes tens of ms); Config is read-only here."""
    try:
        if config is None:
            return ocio.Config.CreateFromBuiltinConfig(BUILTIN_CONFIG)
        if not config.startswith("ocio://") and not Path(config).is_file():
            raise ColorError(f"OCIO config {config} does not exist or is not a file")
        return ocio.Config.CreateFromFile(config)
    except _OCIO_ERRORS as err:
        where = f"built-in OCIO config {BUILTIN_CONFIG}" if config is None else f"OCIO config {config}"
        raise ColorError(f"cannot read {where}: {err}") from None


def _find(config: ocio.Config, name: str) -> ocio.ColorSpace | None:
    """The colourspace a name means: OCIO's own names and aliases (case-insensitive), then the
    equivalents of Blender's names in the ACES configs, then the data role for Non-Color."""
    space = config.getColorSpace(name)
    if space is not None:
        return space
    key = name.strip().casefold()
    for other in _EQUIVALENTS.get(key, ()):
        space = config.getColorSpace(other)
        if space is not None:
            return space
    if key in _DATA_NAMES:
        data = config.getRoleColorSpace(ocio.ROLE_DATA)
        return config.getColorSpace(data) if data else None
    return None


class ColorConverter:
    """Converts pixels between one colourspace of an OCIO config and the network's sRGB.

    Both CPU processors are built once, here; afterwards the object is read-only, and OCIO CPU
    processors may be applied from several threads at once, so one converter serves all workers.
    Identity conversions (same space, data spaces, view-baked sRGB) skip OCIO and are exact.
    """

    def __init__(self, colorspace: str, config: str | os.PathLike[str] | None = None) -> None:
        self.config_name = f"built-in:{BUILTIN_CONFIG}" if config is None else os.fspath(config)
        cfg = _load_config(None if config is None else os.fspath(config))
        network = next(filter(None, (cfg.getColorSpace(n) for n in NETWORK_SPACES)), None)
        if network is None:
            raise ColorError(f"OCIO config {self.config_name} has no sRGB texture colourspace"
                             f" (looked for {', '.join(NETWORK_SPACES)})")
        space = _find(cfg, colorspace)
        if space is None:
            if colorspace in VIEW_BAKED:
                space_name = colorspace
            else:
                names = ", ".join(cfg.getColorSpaceNames())
                raise ColorError(f"unknown colourspace {colorspace!r} in OCIO config"
                                 f" {self.config_name}; available: {names}")
        else:
            space_name = space.getName()
        self.colorspace: str = space_name
        self.network_space: str = network.getName()
        # Why pixels are left alone, or None when OCIO converts them.
        self.passthrough: str | None = None
        if space is not None and space.isData():
            # Data (masks, normals, "Non-Color") carries no colour meaning: converting it would
            # only corrupt it, and Blender itself never transforms it.
            self.passthrough = "data colourspace"
        elif space_name in VIEW_BAKED:
            self.passthrough = "sRGB display encoding with a baked view transform"
        elif space_name == self.network_space:
            self.passthrough = "already the network's sRGB"
        self._to: ocio.CPUProcessor | None = None
        self._from: ocio.CPUProcessor | None = None
        if self.passthrough is None:
            # Scene- to display-referred spaces (Blender's "sRGB" is display-referred) go through
            # the config's default view transform: "Standard" in Blender, "Un-tone-mapped" in the
            # ACES configs, both plain matrices, so the conversion stays invertible.
            try:
                to = cfg.getProcessor(space_name, self.network_space)
                back = cfg.getProcessor(self.network_space, space_name)
                if to.isNoOp() and back.isNoOp():
                    self.passthrough = "OCIO reports no operation"
                else:
                    self._to = to.getOptimizedCPUProcessor(_FLAGS)
                    self._from = back.getOptimizedCPUProcessor(_FLAGS)
            except _OCIO_ERRORS as err:
                raise ColorError(f"OCIO cannot convert {space_name!r} to {self.network_space!r}"
                                 f" with config {self.config_name}: {err}") from None

    @property
    def is_identity(self) -> bool:
        """True when pixels pass unchanged (then round trips are exact, integers bit for bit)."""
        return self.passthrough is not None

    def to_network(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 3) values in the source colourspace -> float32 sRGB, unclamped (a new array)."""
        return _apply(self._to, pixels)

    def from_network(self, srgb: np.ndarray) -> np.ndarray:
        """(..., 3) float sRGB -> float32 values in the source colourspace (a new array)."""
        return _apply(self._from, srgb)

    def __repr__(self) -> str:
        how = self.passthrough or "OCIO"
        return f"ColorConverter({self.colorspace!r} <-> {self.network_space!r}, {self.config_name}, {how})"


def _apply(cpu: ocio.CPUProcessor | None, pixels: np.ndarray) -> np.ndarray:
    """A contiguous float32 copy of the pixels with the processor applied in place."""
    if pixels.shape[-1:] != (3,):
        raise ValueError(f"expected RGB pixels (..., 3), got shape {pixels.shape}")
    out = np.array(pixels, dtype=np.float32, order="C", copy=True)
    if cpu is not None and out.size:  # OCIO refuses empty images
        cpu.applyRGB(out)
    return out


@functools.lru_cache(maxsize=32)
def _cached_converter(colorspace: str, config: str | None) -> ColorConverter:
    return ColorConverter(colorspace, config)


def get_converter(colorspace: str, config: str | os.PathLike[str] | None = None) -> ColorConverter:
    """A shared converter per (colourspace, config): configs and processors are built once."""
    return _cached_converter(colorspace, None if config is None else os.fspath(config))


def frame_to_network(frame: np.ndarray, converter: ColorConverter) -> np.ndarray:
    """Float32 sRGB in [0, 1] from source pixels (uint8, uint16 or float, shape (..., 3)).

    Integers are code values of the source's colourspace (scaled to [0, 1]), floats are taken as
    they are. Values the network cannot hold (beyond sRGB white, negative, NaN/inf) are clipped:
    only the face the network redraws is affected, the rest of the frame is never converted back.
    """
    if frame.dtype == np.uint8:
        values = frame.astype(np.float32) / np.float32(255.0)
    elif frame.dtype == np.uint16:
        values = frame.astype(np.float32) / np.float32(65535.0)
    elif np.issubdtype(frame.dtype, np.floating):
        values = frame.astype(np.float32)
    else:
        raise TypeError(f"unsupported frame type {frame.dtype}")
    if not converter.is_identity:
        values = converter.to_network(values)
    values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(values, 0.0, 1.0, out=values)


def network_to_source(srgb: np.ndarray, converter: ColorConverter, dtype: np.dtype | type) -> np.ndarray:
    """Network sRGB (float, (..., 3)) -> pixels of the source's colourspace and dtype.

    Converts exactly the pixels it is given (pass the masked face region only), so everything
    else in the frame stays bit-identical. Integers are rounded and clipped to their range;
    floats keep out-of-range values (EXR highlights survive what the swap did not touch).
    """
    values = converter.from_network(srgb)
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return np.clip(np.rint(values * np.float32(255.0)), 0, 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.clip(np.rint(values * np.float32(65535.0)), 0, 65535).astype(np.uint16)
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype, copy=False)
    raise TypeError(f"unsupported frame type {dtype}")
