"""The face-swap network and its model folder: shapes, numerics, an exact round trip, atomic
checkpoints, and a folder from a stranger that lies or carries a pickle."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from core import atomic
from core.errors import DeepfakeError
from core.model import (PRESETS, FaceSwapModel, ModelConfig, ModelError, build_model, load_config, load_model,
                        param_count, save_model)

ROOT = Path(__file__).resolve().parents[1]
SMALL = PRESETS["small"]
# Pinned: a change here means old model folders no longer load. Bump format_version with it.
PARAMS = {"small": 9_376_584, "standard": 62_674_568, "large": 157_352_136}


@pytest.fixture(scope="module")
def small() -> FaceSwapModel:
    torch.manual_seed(0)
    return build_model(SMALL).eval()


@pytest.fixture
def saved(tmp_path, small) -> Path:
    folder = tmp_path / "model"
    save_model(folder, small, SMALL)
    return folder


def faces(n: int, res: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Network


@pytest.mark.parametrize("preset", ["small", "standard", "large"])
def test_forward_shapes_and_ranges(preset):
    config = PRESETS[preset]
    net = build_model(config).eval()
    assert param_count(net) == PARAMS[preset]
    res = config.resolution
    with torch.no_grad():
        for identity in ("a", "b"):
            rgb, mask = net(faces(2, res), identity)
            assert rgb.shape == (2, 3, res, res) and mask.shape == (2, 1, res, res)
            assert rgb.dtype == mask.dtype == torch.float32
            assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= mask.min() and mask.max() <= 1


def test_encode_once_decode_with_both(small):
    x = faces(2, 64)
    with torch.no_grad():
        latent = small.encode(x)
        assert latent.shape == (2, SMALL.decoder_channels[0], 8, 8)
        for identity in ("a", "b"):
            direct = small(x, identity)
            via = small.decode(latent, identity)
            assert all(torch.equal(p, q) for p, q in zip(direct, via))
        assert not torch.equal(small.decode(latent, "a")[0], small.decode(latent, "b")[0])
    with pytest.raises(ModelError, match="identity 'c'"):
        small.decode(latent, "c")
    with pytest.raises(ModelError, match="64 px"):
        small.encode(faces(1, 32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_and_channels_last_train(dtype):
    torch.manual_seed(0)
    net = build_model(SMALL).to(memory_format=torch.channels_last)
    x = faces(2, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=dtype):
        latent = net.encode(x)
        rgb_a, mask_a = net.decode(latent[:1], "a")
        rgb_b, mask_b = net.decode(latent[1:], "b")
    assert rgb_a.dtype == mask_b.dtype == torch.float32   # losses run in full precision
    loss = (rgb_a - x[:1]).abs().mean() + (rgb_b - x[1:]).abs().mean() + mask_a.mean() + mask_b.mean()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_config_json_round_trip_and_validation():
    for config in PRESETS.values():
        assert ModelConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    good = SMALL.to_json()
    cases = [
        ({**good, "colour": 1}, "unknown key"),
        ({k: v for k, v in good.items() if k != "latent"}, "missing key"),
        ({**good, "latent": "256"}, "'latent' should be int"),
        ({**good, "latent": True}, "'latent' should be int"),
        ({**good, "encoder_channels": [32, 64.0, 128, 256]}, "list of integers"),
        ({**good, "preset": "huge"}, "unknown model preset 'huge'"),
        ({**good, "resolution": 100}, "does not match the channel plan"),
        ({**good, "resolution": 16}, "at least 32"),
        ({**good, "decoder_channels": [256, 128, 64]}, "as many decoder as encoder"),
        ({**good, "latent": 10**9}, "latent size"),
        ([1, 2], "expected a JSON object"),
    ]
    for data, message in cases:
        with pytest.raises(ModelError, match=message) as e:
            ModelConfig.from_json(data)
        assert "\n" not in str(e.value)
    assert issubclass(ModelError, DeepfakeError)


# ---------------------------------------------------------------------------------------------
# Model folder


def test_round_trip_is_exact(tmp_path, small):
    folder = tmp_path / "model"
    extras = {"optim.state.0.exp_avg": torch.randn(3, 4), "optim.state.0.step": torch.tensor(7.0),
              "rng.cpu": torch.get_rng_state(), "optim.view": torch.arange(10.0)[2:5]}
    metadata = {"state": json.dumps({"iteration": 1234, "loss": [0.5, 0.25]})}
    save_model(folder, small, SMALL, extras, metadata)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    (folder / "plain").write_text("")   # the umask's mode: others on a shared folder can read
    assert (folder / "model.safetensors").stat().st_mode == (folder / "plain").stat().st_mode
    (folder / "plain").unlink()
    on_disk = json.loads((folder / "config.json").read_text())
    assert on_disk["format"] == "blender-deepfake-model" and on_disk["format_version"] == 1
    assert on_disk["param_count"] == PARAMS["small"] and on_disk["latent"] == SMALL.latent
    assert load_config(folder) == SMALL

    loaded, config, got_extras, got_metadata = load_model(folder, expect=SMALL)
    assert config == SMALL and got_metadata == metadata
    assert got_extras.keys() == extras.keys()
    for key, value in extras.items():
        assert got_extras[key].dtype == value.dtype and torch.equal(got_extras[key], value)
    x = faces(2, 64)
    with torch.no_grad():
        for identity in ("a", "b"):
            assert all(torch.equal(p, q) for p, q in zip(small(x, identity), loaded.eval()(x, identity)))


def test_channels_last_model_saves(tmp_path):
    net = build_model(SMALL).to(memory_format=torch.channels_last)
    save_model(tmp_path / "m", net, SMALL)
    loaded = load_model(tmp_path / "m")[0]
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), loaded.state_dict().values()))


class Wrapper(torch.nn.Module):
    """Stands in for torch.compile's OptimizedModule ('_orig_mod') and DDP ('module'), whose
    state_dict keys carry that prefix (the real ones cost seconds to import or need a group)."""

    def __init__(self, inner: torch.nn.Module, attribute: str):
        super().__init__()
        setattr(self, attribute, inner)


def test_wrapped_model_saves_plain_names(tmp_path, small):
    wrapped = Wrapper(Wrapper(small, "module"), "_orig_mod")
    assert next(iter(wrapped.state_dict())).startswith("_orig_mod.module.")
    save_model(tmp_path / "m", wrapped, SMALL)
    assert load_model(tmp_path / "m")[0].state_dict().keys() == small.state_dict().keys()


def test_save_refuses_bad_arguments(tmp_path, small):
    with pytest.raises(ValueError, match="collides"):
        save_model(tmp_path / "m", small, SMALL, {"model.encoder.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="reserved"):
        save_model(tmp_path / "m", small, SMALL, metadata={"format": "x"})
    with pytest.raises(TypeError, match="str to str"):
        save_model(tmp_path / "m", small, SMALL, metadata={"state": 3})
    with pytest.raises(ValueError, match="built for"):
        save_model(tmp_path / "m", small, PRESETS["standard"])


def test_load_never_unpickles(saved, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle or torch.load was called")
    for owner, name in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(owner, name, forbidden)
    load_model(saved)


def test_failed_save_keeps_previous_checkpoint(saved, small, monkeypatch):
    before = (saved / "model.safetensors").read_bytes()
    changed = build_model(SMALL)

    def crash(src, dst):
        raise OSError("simulated crash before the rename")
    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_model(saved, changed, SMALL, metadata={"state": "new"})
    monkeypatch.undo()
    assert (saved / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]  # no temp left
    x = faces(1, 64)
    with torch.no_grad():
        assert torch.equal(load_model(saved)[0](x, "a")[0], small(x, "a")[0])


def test_kill_9_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    """A child saves in a loop; SIGKILL lands wherever it lands. The last finished checkpoint (or
    the one in flight, if its rename happened) must load."""
    folder = tmp_path / "model"
    child = textwrap.dedent(f"""
        import sys, torch
        from core.model import PRESETS, build_model, save_model
        net = build_model(PRESETS["small"])
        i = 0
        while True:
            with torch.no_grad():
                for p in net.parameters():
                    p.fill_(i)
            save_model({str(folder)!r}, net, PRESETS["small"], {{"optim.i": torch.tensor(i)}}, {{"i": str(i)}})
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        done = [int(proc.stdout.readline()) for _ in range(2)]
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done += [int(line) for line in proc.stdout.read().split()]
    net, _, extras, metadata = load_model(folder)
    i = int(metadata["i"])
    assert i in (done[-1], done[-1] + 1)
    assert int(extras["optim.i"]) == i
    assert all(bool((p == i).all()) for p in net.parameters())


class RunsCode:
    """Unpickling this opens (creates) a file: proof that a loader would run a stranger's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_live(tmp_path):
    """Control for the test below: the payload does run when something unpickles it."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(RunsCode(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch.save dict", "torch.save payload", "raw pickle payload"])
def test_pickle_weights_are_refused(saved, tmp_path, kind):
    marker = tmp_path / "pwned"
    weights = saved / "model.safetensors"
    weights.unlink()
    if kind == "torch.save dict":
        torch.save({"model." + k: v for k, v in build_model(SMALL).state_dict().items()}, weights)
    elif kind == "torch.save payload":
        torch.save({"state": RunsCode(marker)}, weights)
    else:
        weights.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
    with pytest.raises(ModelError, match="not a readable safetensors file") as e:
        load_model(saved)
    assert "model.safetensors" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_truncated_weights_are_refused(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(saved)


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("changes, tensor, found, described", [
    ({"latent": 128}, "model.encoder.to_latent.weight", [256, 4096], [128, 4096]),
    ({"encoder_channels": [32, 64, 128, 512]}, "model.encoder.down.3.conv.weight", [256, 128, 5, 5], [512, 128, 5, 5]),
    ({"decoder_channels": [256, 128, 64, 16]}, "model.decoders.a.blocks.4.conv.weight", [128, 64, 3, 3], [64, 64, 3, 3]),
    ({"resolution": 128}, "model.encoder.to_latent.weight", [256, 4096], [256, 16384]),
])
def test_config_that_lies_about_shapes(saved, changes, tensor, found, described):
    edit_config(saved, **changes)
    with pytest.raises(ModelError) as e:
        load_model(saved)
    message = str(e.value)
    assert f"'{tensor}'" in message and str(found) in message and str(described) in message, message
    assert "model.safetensors" in message and "\n" not in message


def test_weights_with_missing_or_unknown_tensors(saved):
    weights = saved / "model.safetensors"
    tensors = load_file(weights)
    missing = dict(tensors)
    del missing["model.decoders.b.out.bias"]
    save_file(missing, weights)
    with pytest.raises(ModelError, match="lacks tensor 'model.decoders.b.out.bias'"):
        load_model(saved)
    save_file({**tensors, "model.decoders.c.out.bias": torch.zeros(4)}, weights)
    with pytest.raises(ModelError, match="holds tensor 'model.decoders.c.out.bias'"):
        load_model(saved)
    save_file({**tensors, "model.decoders.b.out.bias": torch.zeros(4, dtype=torch.int64)}, weights)
    with pytest.raises(ModelError, match="dtype I64"):
        load_model(saved)


def test_another_preset_than_expected(tmp_path):
    folder = tmp_path / "std"
    save_model(folder, build_model(PRESETS["standard"]), PRESETS["standard"])
    with pytest.raises(ModelError) as e:
        load_model(folder, expect=SMALL)
    assert str(e.value) == (f"model at {folder} is preset 'standard' (128 px); "
                            f"this run asks for preset 'small' (64 px)")


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("\xff\xfe garbage", "is not valid JSON"),
    ("[1, 2, 3]", "is not a blender-deepfake-model config"),
    ('{"format": "blender-deepfake-faceset", "version": 1}', "format: 'blender-deepfake-faceset'"),
    ('{"format": "blender-deepfake-model", "format_version": 2}', "format version 2"),
])
def test_garbage_config(saved, content, message):
    (saved / "config.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(ModelError, match=message) as e:
        load_model(saved)
    assert "config.json" in str(e.value) and "\n" not in str(e.value)


def test_config_with_unknown_key(saved):
    edit_config(saved, dropout=0.5)
    with pytest.raises(ModelError, match=r"config.json: unknown key\(s\) 'dropout'"):
        load_model(saved)


def test_missing_pieces(tmp_path, saved):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        load_model(saved)
    (saved / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model(saved)

