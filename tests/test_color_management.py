"""OCIO colour conversions: round trips exact enough that the transform alone (swap disabled)
stays under 1e-4, identities exact, and errors the user can act on."""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import VIDEO

from core.color_management import (
    BUILTIN_CONFIG,
    ColorConverter,
    ColorError,
    frame_to_network,
    get_converter,
    linear_to_srgb,
    network_to_source,
    srgb_to_linear,
    to_display_uint8,
)
from core.errors import DeepfakeError


def _blender_config() -> Path:
    """Blender's own config.ocio from the bpy wheel, found without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    assert spec is not None and spec.origin is not None, "bpy is part of the test environment"
    found = sorted(Path(spec.origin).parent.glob("*/datafiles/colormanagement/config.ocio"))
    assert found, "the bpy wheel ships Blender's colormanagement/config.ocio"
    return found[-1]


# Blender's own config and the built-in ACES CG one: both must accept Blender's names.
CONFIGS = ["blender", "builtin"]


@pytest.fixture(params=CONFIGS)
def config(request) -> Path | None:
    return _blender_config() if request.param == "blender" else None


@pytest.fixture(scope="module")
def frame_uint8() -> np.ndarray:
    import av

    with av.open(str(VIDEO / "liveportrait_d18.mp4")) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def linear_frame(frame_uint8) -> np.ndarray:
    """The frame made scene-linear, one corner scaled so its brightest value is 1.5, and a few
    slightly negative values: both survive OCIO's unclamped sRGB curve."""
    linear = srgb_to_linear(frame_uint8.astype(np.float64) / 255.0).astype(np.float32)
    h, w, _ = linear.shape
    linear[: h // 4, : w // 4] *= 1.5 / max(float(linear[: h // 4, : w // 4].max()), 1e-6)
    linear[-8:, -8:] = np.float32(-0.01)
    return linear


def test_linear_rec709_round_trip_under_1e4(config, linear_frame):
    conv = ColorConverter("Linear Rec.709", config)
    assert not conv.is_identity
    network = conv.to_network(linear_frame)
    assert network.dtype == np.float32 and network.shape == linear_frame.shape
    assert network.max() > 1.0  # highlights are not clamped by the conversion itself
    back = conv.from_network(network)
    err = float(np.abs(back - linear_frame).max())
    assert err < 1e-4, err
    # the input is not modified in place
    assert linear_frame.max() == pytest.approx(1.5, abs=1e-6)


def test_ocio_srgb_curve_matches_iec_formula(config):
    ramp = np.linspace(0.0, 1.0, 4097, dtype=np.float32)
    rgb = np.stack([ramp, ramp, ramp], axis=-1)
    network = ColorConverter("Linear Rec.709", config).to_network(rgb)
    assert np.abs(network - linear_to_srgb(rgb.astype(np.float64))).max() < 1e-3


def test_srgb_source_is_identity(config, frame_uint8):
    conv = ColorConverter("sRGB", config)
    assert conv.is_identity
    values = frame_uint8.astype(np.float32) / 255
    assert np.array_equal(conv.to_network(values), values)


def test_srgb_aliases_resolve_to_the_network_space(config):
    for name in ("srgb", "sRGB - Texture", "srgb_tx"):
        assert ColorConverter(name, config).is_identity


@pytest.mark.parametrize("space", ["sRGB", "Linear Rec.709"])
def test_uint8_round_trip_is_bit_exact(config, frame_uint8, space):
    conv = ColorConverter(space, config)
    net = frame_to_network(frame_uint8, conv)
    assert net.dtype == np.float32 and 0.0 <= net.min() and net.max() <= 1.0
    back = network_to_source(net, conv, np.uint8)
    assert back.dtype == np.uint8
    assert np.array_equal(back, frame_uint8)
    every = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(-1, 3)
    assert np.array_equal(network_to_source(frame_to_network(every, conv), conv, np.uint8), every)


def test_uint16_identity_round_trip_is_bit_exact(config):
    every = np.repeat(np.arange(65536, dtype=np.uint16), 3).reshape(-1, 3)
    conv = ColorConverter("sRGB", config)
    assert np.array_equal(network_to_source(frame_to_network(every, conv), conv, np.uint16), every)


def test_float_network_input_is_clipped_and_back_conversion_keeps_dtype(config, linear_frame):
    conv = get_converter("Linear Rec.709", config)
    net = frame_to_network(linear_frame, conv)
    assert net.min() >= 0.0 and net.max() <= 1.0
    back = network_to_source(net, conv, np.float32)
    assert back.dtype == np.float32
    inside = (linear_frame >= 0).all(-1) & (linear_frame <= 1).all(-1)
    assert np.abs(back - linear_frame)[inside].max() < 1e-4


def test_back_conversion_touches_only_the_masked_pixels(frame_uint8):
    """Compositing in the source's space through core.compositing.composite: a linear float frame
    comes back bit-identical wherever the mask is 0, and changed where it is 1."""
    from core import compositing

    source = srgb_to_linear(frame_uint8 / 255.0).astype(np.float32)
    conv = get_converter("Linear Rec.709", _blender_config())
    mask = np.zeros(source.shape[:2], np.float32)
    mask[40:80, 40:80] = 1.0
    face = conv.from_network(1.0 - frame_to_network(source, conv))  # stand-in for the network, in the source's space
    out = compositing.composite(source, face, mask)
    assert np.array_equal(out[mask == 0], source[mask == 0])
    assert not np.allclose(out[mask == 1], source[mask == 1])

def test_non_color_is_identity(config):
    conv = ColorConverter("Non-Color", config)
    assert conv.is_identity and conv.passthrough == "data colourspace"
    values = np.array([[-1.0, 0.5, 7.0]], np.float32)
    assert np.array_equal(conv.from_network(conv.to_network(values)), values)


def test_view_baked_spaces_pass_through():
    for name in ("Filmic sRGB", "AgX Base sRGB"):
        assert ColorConverter(name, _blender_config()).is_identity
        assert ColorConverter(name).is_identity


def test_acescg_round_trip(config):
    conv = ColorConverter("ACEScg", config)
    rgb = np.random.default_rng(0).uniform(0.0, 1.5, (1000, 3)).astype(np.float32)
    assert np.abs(conv.from_network(conv.to_network(rgb)) - rgb).max() < 1e-4


def test_unknown_colorspace_lists_available_names(config):
    with pytest.raises(ColorError) as info:
        ColorConverter("No Such Space", config)
    message = str(info.value)
    assert "No Such Space" in message and "available:" in message and "ACEScg" in message
    assert isinstance(info.value, DeepfakeError)


def test_bad_config_paths(tmp_path):
    with pytest.raises(ColorError, match="does not exist"):
        ColorConverter("sRGB", tmp_path / "missing.ocio")
    garbage = tmp_path / "garbage.ocio"
    garbage.write_text("not: [an ocio config")
    with pytest.raises(ColorError, match="cannot read"):
        ColorConverter("sRGB", garbage)
    with pytest.raises(ColorError):
        ColorConverter("sRGB", tmp_path)


def test_builtin_config_is_the_pinned_one():
    conv = ColorConverter("Linear Rec.709")
    assert BUILTIN_CONFIG in conv.config_name
    assert conv.colorspace == "Linear Rec.709 (sRGB)" and conv.network_space == "sRGB - Texture"


def test_converters_are_shared_and_thread_safe(linear_frame):
    conv = get_converter("Linear Rec.709", _blender_config())
    assert get_converter("Linear Rec.709", str(_blender_config())) is conv
    expected = conv.to_network(linear_frame)
    results: list[bool] = []

    def work() -> None:
        for _ in range(5):
            results.append(np.array_equal(conv.to_network(linear_frame), expected))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


def test_to_display_uint8_unchanged_without_converter(frame_uint8, linear_frame):
    assert to_display_uint8(frame_uint8) is frame_uint8
    wide = frame_uint8.astype(np.uint16) * 257
    assert np.array_equal(to_display_uint8(wide), frame_uint8)
    expected = np.round(linear_to_srgb(np.clip(linear_frame, 0, 1)) * 255).astype(np.uint8)
    assert np.array_equal(to_display_uint8(linear_frame), expected)
    conv = get_converter("sRGB", _blender_config())
    assert np.array_equal(to_display_uint8(frame_uint8, conv), frame_uint8)
