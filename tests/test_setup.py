"""The one setup command picks the torch build for the machine and records the core for the add-on;
offline mode keeps the core off the network (checked with an audit hook on every socket call)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, VIDEO

sys.path.insert(0, str(ROOT))
from blender_deepfake import core_record  # noqa: E402  (bpy-free)


def dry_run(*args: str, path_prefix: Path | None = None, env: dict[str, str] | None = None) -> str:
    full = {**os.environ, **(env or {})}
    if path_prefix is not None:
        full["PATH"] = f"{path_prefix}{os.pathsep}{full['PATH']}"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--dry-run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=full)
    assert done.returncode == 0, done.stderr
    return done.stderr + done.stdout


def fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'END'\n{output}\nEND\nexit {code}\n")
    smi.chmod(0o755)
    return folder


def test_this_machine_gets_the_cpu_build_and_is_told_why():
    assert not any((Path(p) / "nvidia-smi").exists() for p in os.environ["PATH"].split(os.pathsep)), \
        "this test describes a machine without an NVIDIA driver"
    out = dry_run()
    assert "setup: torch build: cpu (no NVIDIA driver found (nvidia-smi is not on PATH))" in out
    assert "--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple" in out
    assert "--no-index --no-deps torch==2.13.0" in out  # a local CPU wheel first


def test_an_nvidia_driver_gets_the_cuda_build(tmp_path):
    fake = fake_nvidia_smi(tmp_path / "bin", "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-5e1f0c7a)")
    out = dry_run(path_prefix=fake)
    assert "setup: torch build: cuda (NVIDIA driver found: GPU 0: NVIDIA GeForce RTX 4090)" in out
    assert ".venv/bin/python -m pip install -q torch==2.13.0 --index-url https://pypi.org/simple" in out
    assert "whl/cpu" not in out
    # --cpu wins over the driver; a driver that does not answer is no GPU
    assert "torch build: cpu (asked for with --cpu)" in dry_run("--cpu", path_prefix=fake)
    broken = fake_nvidia_smi(tmp_path / "broken", "NVIDIA-SMI has failed because it couldn't communicate "
                             "with the NVIDIA driver.", code=9)
    assert "torch build: cpu (nvidia-smi is on PATH but lists no GPU" in dry_run(path_prefix=broken)
    assert "torch build: cuda (asked for with --cuda)" in dry_run("--cuda")


def test_the_record_round_trips_and_a_broken_one_says_what_to_run(tmp_path):
    path = tmp_path / "cfg" / "core.json"
    done = subprocess.run([sys.executable, str(ROOT / "blender_deepfake" / "core_record.py"), "write", "--python",
                           sys.executable, "--project", str(ROOT), "--torch-build", "cpu", "--reason", "no driver"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "DEEPFAKE_CORE_RECORD": str(path)})
    assert done.returncode == 0, done.stderr
    record = core_record.read_record(path)
    assert (record.python, record.project, record.torch_build, record.reason) == (
        str(Path(sys.executable).absolute()), str(ROOT), "cpu", "no driver")
    assert record.setup_command() == f"bash {ROOT / 'scripts' / 'setup.sh'}"
    assert json.loads(path.read_text())["format"] == 1
    path.write_text("{not json")
    with pytest.raises(core_record.RecordError, match="scripts/setup.sh"):
        core_record.read_record(path)
    assert core_record.read_record(tmp_path / "none.json") is None


# -- offline ----------------------------------------------------------------------------------------------
AUDIT = '''import os, sys
def _hook(event, args, _log=os.environ["NET_AUDIT_LOG"]):
    if event.startswith("socket.") and event != "socket.__new__" or event in ("urllib.Request", "http.client.connect"):
        with open(_log, "a") as f:
            f.write(event + " " + repr(args)[:200] + "\\n")
sys.addaudithook(_hook)
open(os.environ["NET_AUDIT_LOG"] + ".loaded", "w").close()  # proof that the hook ran in that process
'''


def audited_extract(tmp_path: Path, name: str, offline: bool) -> tuple[str, list[str]]:
    """`deepfake extract --aligner auto` on 3 frames with no face-alignment weights cached, every
    socket call of the process (and its threads) written down by an audit hook."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / f"{name}.net"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(hook), "NET_AUDIT_LOG": str(log), "TORCH_HOME": str(tmp_path / "torch")}
    env.pop("DEEPFAKE_OFFLINE", None)
    args = [sys.executable, "-m", "core", "extract", str(VIDEO / "liveportrait_d18.mp4"), "--out",
            str(tmp_path / name), "--count", "3", "--aligner", "auto", "--device", "cpu"]
    done = subprocess.run(args + (["--offline"] if offline else []), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert Path(f"{log}.loaded").is_file()
    return done.stderr + done.stdout, log.read_text().splitlines()


def test_offline_auto_makes_no_network_attempt_and_uses_dlib(tmp_path):
    out, calls = audited_extract(tmp_path, "offline", offline=True)
    assert calls == []
    assert "aligner: dlib with the hog detector (face-alignment weights not cached" in out
    assert "the core is offline" in out
    # The control: online, the same run probes the weights' host (the hook does see sockets).
    out, calls = audited_extract(tmp_path, "online", offline=False)
    assert any(c.startswith(("socket.getaddrinfo", "socket.connect")) for c in calls), calls
    assert "aligner: " in out


def test_offline_fan_without_cached_weights_is_refused_not_downloaded(tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "DEEPFAKE_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "core", "extract", str(VIDEO / "liveportrait_d18.mp4"), "--out",
                           str(tmp_path / "fs"), "--count", "2", "--aligner", "fan", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    assert "the core is offline" in done.stderr and "--aligner dlib" in done.stderr
    assert not (tmp_path / "torch").exists() or not any((tmp_path / "torch").rglob("*.pth*"))
