"""--device auto|cuda|mps|cpu: the choice, with the two torch probes faked (this machine has neither
GPU), and that a real train and swap never put a float64 tensor on the device (MPS has none).
MPS itself cannot run here."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core import cli
from core.device import choose_device, resolve_device
from core.errors import DeepfakeError
from conftest import VIDEO


@pytest.fixture()
def probes(monkeypatch):
    """Set what torch's own probes answer: cuda, mps."""
    def set_(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return set_


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                 (False, True, "mps"), (False, False, "cpu")])
def test_auto_takes_cuda_then_mps_then_cpu_and_says_why(probes, cuda, mps, expected):
    probes(cuda, mps)
    lines: list[str] = []
    assert resolve_device("auto", log=lines.append) == torch.device(expected)
    assert lines[0].startswith(f"device: {expected} (auto: ")
    if expected == "cpu":
        assert "neither a CUDA GPU nor an Apple GPU" in lines[0]
    if expected == "mps":
        assert "ops MPS lacks" in lines[1]


def test_a_device_the_machine_lacks_is_a_clear_error(probes):
    probes(False, False)
    with pytest.raises(DeepfakeError, match="sees no CUDA GPU.*setup.sh --cuda"):
        choose_device("cuda")
    with pytest.raises(DeepfakeError, match="no Apple GPU"):
        choose_device("mps")
    with pytest.raises(DeepfakeError, match="unknown device"):
        choose_device("tpu")
    probes(False, True)
    assert choose_device("mps") == ("mps", "asked for")
    assert choose_device("cpu") == ("cpu", "asked for")


def test_the_cli_offers_mps_and_sets_the_mps_fallback_before_torch_runs(probes, monkeypatch, capsys):
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    assert cli.main(["swap", str(VIDEO / "missing.mp4"), "--model", "m", "--out", "o", "--device", "mps"]) == 1
    assert os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"


class Float64Watch(TorchDispatchMode):
    """Every aten op whose inputs or outputs hold a float64 tensor: what MPS would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = list(torch.utils._pytree.tree_leaves((args, kwargs or {}, out)))
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in flat):
            self.seen.append(str(func))
        return out


def test_a_real_train_and_swap_use_no_float64_tensor(tiny_model, tmp_path):
    base = tiny_model.parent
    watch = Float64Watch()
    with watch:
        assert cli.main(["train", "--faceset-a", base / "d18", "--faceset-b", base / "d19", "--model", tmp_path / "m",
                         "--iterations", "2", "--batch-size", "2", "--device", "cpu", "--preview-every", "1",
                         "--save-every", "1"]) == 0
        assert cli.main(["swap", VIDEO / "liveportrait_d18.mp4", "--model", tmp_path / "m", "--out", tmp_path / "out",
                         "--start", "0", "--count", "3", "--preroll", "0", "--aligner", "dlib", "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "frame_000002.png").is_file()
    assert watch.seen == [], sorted(set(watch.seen))[:10]
    with watch:  # the control: the watch does see a float64 op
        torch.ones(2, dtype=torch.float64).mul(2)
    assert watch.seen
