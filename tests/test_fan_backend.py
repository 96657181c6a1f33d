"""The face-alignment backend end to end on CPU, without network.

The real S3FD / 2DFAN4 weights cannot be downloaded on test machines, so weight files of the
right shapes are built from the library's own model classes (random init) and saved under the
real file names in a temporary TORCH_HOME: the loading code, the batching and the coordinate
mapping all run for real; only the numbers the networks produce are meaningless.

S3FD's classification heads are set by hand so that exactly one large box per frame passes
its filter: random heads would flag thousands of boxes and the landmark step would take minutes.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("face_alignment")
av = pytest.importorskip("av")

from core.errors import AlignerError  # noqa: E402
from core.faces import fan_backend  # noqa: E402
from core.faces.base import Face  # noqa: E402
from core.faces.select import choose_aligner, fan_weights_status, make_aligner  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
VIDEO = SHARED / "video" / "liveportrait_d18.mp4"


@pytest.fixture(scope="session")
def fake_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds S3FD and 2DFAN4 files of the real shapes and names."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    det = s3fd()
    with torch.no_grad():
        for name, module in det.named_children():
            if name.endswith("_mbox_conf"):  # background wins everywhere: no candidates ...
                module.weight.zero_()
                module.bias.fill_(10.0)
                module.bias[-1] = -10.0
        # ... except on the stride-128 head, whose boxes are stretched (exp(0.2 * 8) = 5x) so
        # that they all overlap and non-maximum suppression leaves one per frame.
        det.conv7_2_mbox_conf.bias.copy_(torch.tensor([-10.0, 10.0]))
        det.conv7_2_mbox_loc.weight.zero_()
        det.conv7_2_mbox_loc.bias.copy_(torch.tensor([0.0, 0.0, 8.0, 8.0]))
    names = {key: path.name for key, path in fan_backend.weight_files().items()}
    torch.save(det.state_dict(), folder / names["s3fd"])
    torch.save(FAN(4).state_dict(), folder / names["2DFAN-4"])
    return home


@pytest.fixture
def torch_home(fake_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called set_dir
    return fake_torch_home


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    assert VIDEO.is_file(), f"shared footage missing: {VIDEO}"
    out = []
    with av.open(str(VIDEO)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == 2:
                break
    return out


@pytest.fixture(scope="session")
def aligner(fake_torch_home: Path) -> fan_backend.FanAligner:
    """One loaded aligner for the session (loading costs seconds); built with the fake weights."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(fake_torch_home))
    mp.setattr(torch.hub, "_hub_dir", None)
    lines: list[str] = []
    try:
        built = make_aligner("fan", "cpu", log=lines.append)
    finally:
        mp.undo()
    assert lines == ["aligner: fan on cpu (asked for)"]
    return built


def test_our_file_names_are_the_librarys() -> None:
    import face_alignment.api as fa_api
    from face_alignment.detection.sfd import sfd_detector

    assert fan_backend.WEIGHT_URLS == {"s3fd": sfd_detector.models_urls["s3fd"], "2DFAN-4": fa_api.models_urls["2DFAN-4"]}
    names = {p.name for p in fan_backend.weight_files().values()}
    assert names == {"s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"}


def test_detect_batch_structure(aligner: fan_backend.FanAligner, frames: list[np.ndarray]) -> None:
    assert aligner.name == "fan"
    result = aligner.detect(frames)
    assert isinstance(result, list) and len(result) == 2
    for faces, frame in zip(result, frames):
        assert isinstance(faces, list)
        assert len(faces) == 1  # by construction of the fake S3FD heads, see the fixture
        for face in faces:
            assert isinstance(face, Face)
            assert len(face.box) == 4 and all(isinstance(v, float) for v in face.box)
            assert isinstance(face.score, float) and 0.5 < face.score <= 1.0
            assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float64
            assert np.isfinite(face.landmarks).all()
    assert aligner.detect([]) == []


def test_detect_with_boxes(aligner: fan_backend.FanAligner, frames: list[np.ndarray]) -> None:
    boxes = [[(150, 100, 350, 330)], [(150, 100, 350, 330, 0.9), (0, 0, 120, 140)]]
    result = aligner.detect(frames, boxes=boxes)
    assert [len(faces) for faces in result] == [1, 2]
    for faces, frame_boxes in zip(result, boxes):
        for face, box in zip(faces, frame_boxes):
            assert face.box == tuple(float(v) for v in box[:4])
            assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()
    assert [f.score for f in result[1]] == [0.9, 1.0]
    # Frames without boxes give no faces (and no forward pass).
    assert aligner.detect(frames, boxes=[[], []]) == [[], []]
    with pytest.raises(ValueError):
        aligner.detect(frames, boxes=[[]])


def test_landmarks_match_the_library(aligner: fan_backend.FanAligner, frames: list[np.ndarray]) -> None:
    """Our batched landmark step equals face-alignment's own, minus its int truncation."""
    box = (150.0, 100.0, 350.0, 330.0)
    ours = aligner.detect(frames[:1], boxes=[[box]])[0][0].landmarks
    theirs = aligner._fa.get_landmarks_from_image(frames[0], detected_faces=[np.array(box)])[0]
    assert np.abs(ours - theirs).max() < 1.0 + 1e-6


def test_auto_picks_fan_when_cached(torch_home: Path) -> None:
    usable, reason = fan_weights_status()
    assert usable and str(torch_home / "hub" / "checkpoints") in reason
    assert choose_aligner("auto")[0] == "fan"
    lines: list[str] = []
    built = make_aligner("auto", "cpu", log=lines.append)
    assert built.name == "fan"
    assert lines == [f"aligner: fan on cpu (face-alignment weights are cached in {torch_home / 'hub' / 'checkpoints'})"]


def _offline(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> None:
    """An empty TORCH_HOME and a download host that never resolves (RFC 6761 .invalid)."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(fan_backend, "DOWNLOAD_HOST", "weights.invalid")
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def test_auto_falls_back_to_dlib_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch, tmp_path)
    # "At once": the only wait is one connection probe, bounded by its timeout (a spy records
    # it), rather than a wall-clock bound that a loaded machine could miss.
    probes: list[float] = []
    real_probe = fan_backend.download_host_reachable
    monkeypatch.setattr(fan_backend, "download_host_reachable", lambda timeout: probes.append(timeout) or real_probe(timeout))
    usable, reason = fan_weights_status()
    assert not usable and "not cached" in reason and str(tmp_path) in reason
    lines: list[str] = []
    built = make_aligner("auto", "cpu", log=lines.append)
    assert probes and all(t <= 2.0 for t in probes) and len(probes) <= 2
    assert built.name == "dlib"
    assert len(lines) == 1 and lines[0].startswith("aligner: dlib") and "not cached" in lines[0]


def test_explicit_fan_without_weights_is_an_aligner_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch, tmp_path)
    with pytest.raises(AlignerError) as info:
        make_aligner("fan", "cpu", log=lambda _: None)
    assert "\n" not in str(info.value) and "not cached" in str(info.value)


def test_unknown_aligner_name() -> None:
    with pytest.raises(AlignerError):
        make_aligner("mediapipe", "cpu")
