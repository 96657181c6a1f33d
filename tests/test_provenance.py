"""Provenance labels: what a verifier (the C2PA SDK's own reader, exiftool-like readers) finds in
what we write, that tampering shows, and that keys stay where they belong."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import av
import c2pa
import cv2
import numpy as np
import OpenEXR
import pytest
from PIL import Image

from conftest import ROOT, VIDEO, events_of, png_image_data, run_cli
from core.provenance import LabelSettings, Labeller, credentials, sequence
from core.provenance.content_credentials import COMPOSITE_WITH_TRAINED
from core.sinks import ImageSequenceSink, MovieSink

D18 = VIDEO / "liveportrait_d18.mp4"
PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]+-----\s+[A-Za-z0-9+/=\s]{40,}-----END")  # a key or certificate itself
SHORT = ("--start", "173", "--count", "6", "--preroll", "0", "--aligner", "dlib")


def sdk_manifest(path: Path) -> tuple[str, dict, dict]:
    """The SDK's own reading: validation state, active manifest, validation results."""
    reader = c2pa.Reader(str(path))
    try:
        return reader.get_validation_state(), reader.get_active_manifest(), reader.get_validation_results()
    finally:
        reader.close()


def edited_action(manifest: dict) -> dict:
    actions = [a for x in manifest["assertions"] if x["label"].startswith("c2pa.actions")
               for a in x["data"]["actions"]]
    (edited,) = [a for a in actions if a["action"] == "c2pa.edited"]
    return edited


def flip_video_byte(path: Path) -> None:
    """One byte in the middle of the movie's coded video (the mdat box)."""
    data = bytearray(path.read_bytes())
    box = data.index(b"mdat") - 4
    size = int.from_bytes(data[box:box + 4], "big")
    data[box + 8 + (size - 8) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- swaps: the must-show ----------------------------------------------------------------------------------
def test_swap_png_and_mp4_carry_valid_content_credentials(tmp_path, small_model):
    frames, movie = tmp_path / "frames", tmp_path / "shot.mp4"
    for out, fmt in ((frames, "png"), (movie, "mp4")):
        done = run_cli("swap", D18, "--model", small_model, "--out", out, "--format", fmt, *SHORT, "--events", "jsonl")
        assert done.returncode == 0, done.stderr
        logs = [e["message"] for e in events_of(done.stdout) if e["event"] == "log"]
        assert any(m.startswith("labels: Content Credentials signed with the local certificate") for m in logs), logs
    model_id = json.loads((frames / "swap.json").read_text())["model_id"]
    pngs = sorted(frames.glob("frame_*.png"))
    assert len(pngs) == 6
    for path in (pngs[0], pngs[-1], movie):
        state, manifest, results = sdk_manifest(path)
        assert state == "Valid", results
        edited = edited_action(manifest)
        assert edited["digitalSourceType"] == COMPOSITE_WITH_TRAINED
        assert edited["softwareAgent"]["name"] == "blender-deepfake" and edited["parameters"]["model_id"] == model_id
        assert [i["title"] for i in manifest["ingredients"]] == [D18.name]
        # Not trusted: the local certificate is on no trust list, and the SDK says so.
        assert "signingCredential.untrusted" in [f["code"] for f in results["activeManifest"]["failure"]]
    # Plain labels, read by other libraries than ours: Pillow (PNG iTXt), PyAV (MP4 tags).
    text = Image.open(pngs[0]).text
    assert text["AI-modified"] == "face replaced" and text["deepfake:model"] == model_id
    with av.open(str(movie)) as container:
        assert container.metadata["comment"].startswith("AI-modified: face replaced")
    # The labels change no pixel: the frame decodes as it does with every label chunk cut out.
    stripped = cv2.imdecode(np.frombuffer(png_image_data(pngs[0].read_bytes()), np.uint8), -1)
    assert np.array_equal(cv2.imread(str(pngs[0]), -1), stripped) and len(stripped) == 480
    # The sidecar lists every frame with its hash.
    side = json.loads((frames / sequence.NAME).read_text())
    assert sorted(side["frames"]) == [p.name for p in pngs]
    assert side["frames"][pngs[2].name] == sequence.sha256(pngs[2])
    # deepfake verify agrees, for the folder and the movie.
    for target in (frames, movie):
        done = run_cli("verify", target)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "valid signature, NOT trusted" in done.stdout and "compositeWithTrainedAlgorithmicMedia" in done.stdout

    # One byte of the movie's video data changed after signing: tampered, for the SDK and for us.
    flip_video_byte(movie)
    state, _, results = sdk_manifest(movie)
    assert state == "Invalid"
    assert "assertion.bmffHash.mismatch" in [f["code"] for f in results["activeManifest"]["failure"]]
    done = run_cli("verify", movie)
    assert done.returncode == 1 and "INVALID: the file changed after it was signed" in done.stdout, done.stdout
    # A frame re-saved by another program: no label left, and the sidecar's hash tells it changed.
    cv2.imwrite(str(pngs[1]), cv2.imread(str(pngs[1])))
    done = run_cli("verify", frames, "--events", "jsonl")
    result = events_of(done.stdout)[-1]
    assert done.returncode == 1 and result["tampered"] == [pngs[1].name] and result["unlabelled"] == [pngs[1].name]


def test_exr_frames_carry_header_labels_and_the_encoded_movie_is_signed(tmp_path, small_model):
    exr = tmp_path / "exr"
    done = run_cli("swap", D18, "--model", small_model, "--out", exr, "--format", "exr", *SHORT)
    assert done.returncode == 0, done.stderr
    first = sorted(exr.glob("frame_*.exr"))[0]
    with OpenEXR.File(str(first), header_only=True) as f:
        header = dict(f.header())
    assert header["AI-modified"] == "face replaced" and header["deepfake:source"] == D18.name
    assert cv2.imread(str(first), cv2.IMREAD_UNCHANGED).dtype == np.float32
    assert run_cli("verify", exr).returncode == 0
    # PNG frames joined into a movie by encode: the movie is labelled too.
    png, movie = tmp_path / "png", tmp_path / "joined.mp4"
    assert run_cli("swap", D18, "--model", small_model, "--out", png, *SHORT).returncode == 0
    done = run_cli("encode", png, "--out", movie)
    assert done.returncode == 0, done.stderr
    state, manifest, _ = sdk_manifest(movie)
    assert state == "Valid" and edited_action(manifest)["digitalSourceType"] == COMPOSITE_WITH_TRAINED


def test_labels_off_is_explicit_logged_and_not_mixed_with_labelled_frames(tmp_path, small_model):
    out = tmp_path / "plain"
    done = run_cli("swap", D18, "--model", small_model, "--out", out, *SHORT, "--no-label", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    warnings = [e["message"] for e in events_of(done.stdout) if e["event"] == "warning"]
    assert warnings == ["labelling is off (--no-label): the outputs do not say that a face in them was replaced"]
    frame = sorted(out.glob("frame_*.png"))[0]
    assert "AI-modified" not in Image.open(frame).text and not (out / sequence.NAME).exists()
    done = run_cli("verify", frame)
    assert done.returncode == 1 and "carries no label" in done.stdout
    # The same swap with labels on would write labelled frames among unlabelled ones: refused.
    again = run_cli("swap", D18, "--model", small_model, "--out", out, *SHORT)
    assert again.returncode == 1 and "labels off -> on" in again.stderr, again.stderr


def test_visible_label_marks_only_the_corner(tmp_path, small_model):
    plain_out, marked = tmp_path / "plain", tmp_path / "marked"
    for out, extra in ((plain_out, ()), (marked, ("--visible-label",))):
        assert run_cli("swap", D18, "--model", small_model, "--out", out, *SHORT, *extra).returncode == 0
    a = cv2.imread(str(plain_out / "frame_000173.png"))
    b = cv2.imread(str(marked / "frame_000173.png"))
    changed = np.argwhere(np.any(a != b, axis=2))
    assert len(changed) > 0
    (y0, _), (_, x1) = changed.min(axis=0), changed.max(axis=0)
    assert y0 > 0.85 * a.shape[0] and x1 < 0.4 * a.shape[1]  # the lower left corner, nothing else
    cv2.imwrite(str(tmp_path / "visible_label.png"), b)


def test_no_key_or_certificate_lands_in_the_project_the_model_or_the_output(tmp_path, small_model, d18_faceset):
    out = tmp_path / "out"
    assert run_cli("swap", D18, "--model", small_model, "--out", out, *SHORT).returncode == 0
    folder = credentials.credentials_folder()
    assert (folder / credentials.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert ROOT not in folder.parents and small_model not in folder.parents
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    places = [ROOT / p.decode() for p in tracked if p] + [*small_model.rglob("*"), *d18_faceset.parent.rglob("*"),
                                                           *out.rglob("*")]
    for path in places:
        if path.is_file() and path.suffix.lower() not in (".png", ".mp4", ".jpg", ".exr", ".safetensors"):
            assert not PEM_BLOCK.search(path.read_bytes()), path
    key_pem = (folder / credentials.KEY_FILE).read_bytes()
    for path in out.rglob("*"):
        assert key_pem not in path.read_bytes() and b"PRIVATE KEY" not in path.read_bytes(), path


# -- keys: fast ----------------------------------------------------------------------------------------------
def _user_chain(tmp_path: Path) -> tuple[Path, Path]:
    """A key and certificate chain of a user's own CA (as a studio's would be), made with the
    local chain's maker in another folder."""
    from core.provenance.credentials import CHAIN_FILE, KEY_FILE, _make_local_chain

    _make_local_chain(tmp_path / "studio")
    return tmp_path / "studio" / KEY_FILE, tmp_path / "studio" / CHAIN_FILE


@pytest.mark.parametrize("case", ["missing", "folder", "not-pem", "no-cert", "wrong-cert"])
def test_a_bad_user_key_is_a_clear_error_naming_the_preference(tmp_path, case):
    key, cert = _user_chain(tmp_path)
    other_key, other_cert = _user_chain(tmp_path / "other")
    args = {"missing": (tmp_path / "nope.key", cert), "folder": (tmp_path, cert), "not-pem": (cert, cert),
            "no-cert": (key, None), "wrong-cert": (key, other_cert)}[case]
    with pytest.raises(credentials.CredentialsError) as err:
        Labeller(LabelSettings(key=str(args[0]), cert=str(args[1]) if args[1] else None), D18, "m")
    message = str(err.value)
    assert ("Signing Key" in message or "Signing Certificate" in message or "the chain must start" in message), message


def test_a_bad_user_key_fails_the_swap_before_anything_is_written(tmp_path, small_model):
    out = tmp_path / "out"
    done = run_cli("swap", D18, "--model", small_model, "--out", out, *SHORT, "--c2pa-key", tmp_path / "k.pem",
                   "--c2pa-cert", tmp_path / "c.pem")
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.strip().splitlines()[-1] == (f"error: the signing key {tmp_path / 'k.pem'} does not exist: check "
                                   f"{credentials.WHERE_KEY}")


def test_user_credentials_sign_and_name_the_signer(tmp_path):
    key, cert = _user_chain(tmp_path)
    labeller = Labeller(LabelSettings(key=str(key), cert=str(cert)), D18, "model-1")
    assert not labeller.signer.credentials.local
    sink = ImageSequenceSink(tmp_path / "frames", "png", labeller=labeller)
    frame = np.full((64, 80, 3), 128, np.uint8)
    sink.write(3, frame)
    state, manifest, _ = sdk_manifest(sink.path(3))
    assert state == "Valid" and manifest["signature_info"]["issuer"] == credentials.LOCAL_ORG
    assert np.array_equal(cv2.imread(str(sink.path(3)))[..., ::-1], frame)  # pixels as given
    # A studio verifies against its own CA: trusted; without it, valid but not trusted.
    chain = cert.read_text()
    anchors = tmp_path / "studio_ca.pem"
    anchors.write_text(chain[chain.index("-----BEGIN CERTIFICATE-----", 1):])
    done = run_cli("verify", sink.path(3), "--trust-anchors", anchors)
    assert done.returncode == 0 and "valid signature, trusted" in done.stdout, done.stdout + done.stderr
    assert "NOT trusted" in run_cli("verify", sink.path(3)).stdout


def test_label_adds_the_labels_to_files_another_program_wrote(tmp_path):
    movie = tmp_path / "render.mp4"
    with av.open(str(movie), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    png, jpeg = tmp_path / "render_0001.png", tmp_path / "render_0002.jpg"
    cv2.imwrite(str(png), np.full((48, 64, 3), 99, np.uint8))
    cv2.imwrite(str(jpeg), np.full((48, 64, 3), 99, np.uint8))
    assert run_cli("verify", movie).returncode == 1
    listing = tmp_path / "files.txt"
    listing.write_text(f"{movie}\n{png}\n{jpeg}\n")
    done = run_cli("label", f"@{listing}")
    assert done.returncode == 0, done.stderr
    assert Image.open(jpeg).app.get("COM", b"").startswith(b"AI-modified: face replaced")
    assert jpeg.read_bytes()[2:4] == b"\xff\xe0"  # JFIF's APP0 still right after SOI, the comment after it
    for path in (movie, png, jpeg):
        state, manifest, _ = sdk_manifest(path)
        assert state == "Valid" and edited_action(manifest)["digitalSourceType"] == COMPOSITE_WITH_TRAINED
    with av.open(str(movie)) as container:
        assert container.streams.video[0].frames == 12 and "AI-modified" in container.metadata["comment"]
    assert cv2.imread(str(png))[0, 0, 0] == 99
    assert (tmp_path / sequence.NAME).is_file()
    side = json.loads((tmp_path / sequence.NAME).read_text())
    assert len(side["signed_by"]["certificate_sha256"]) == 64 and str(tmp_path.parent) not in json.dumps(side)
    bad = tmp_path / "render.avi"
    bad.write_bytes(b"RIFF")
    done = run_cli("label", bad)
    assert done.returncode == 1 and "cannot label a .avi file" in done.stderr
    # A file that is not what its name says: one error line, and nothing touched.
    fake = tmp_path / "render_0003.png"
    fake.write_bytes(b"not a png at all")
    done = run_cli("label", movie, fake)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "is not a PNG file" in done.stderr
    # verify calls it unlabelled, not tampered with.
    done = run_cli("verify", fake, "--events", "jsonl")
    assert done.returncode == 1 and events_of(done.stdout)[-1]["tampered"] == [], done.stdout


def test_movie_sink_tampering_shows(tmp_path):
    labeller = Labeller(LabelSettings(), D18, "m")
    sink = MovieSink(tmp_path / "x.mp4", 25, 64, 48, labeller=labeller)
    for i in range(25):
        sink.write(i, np.full((48, 64, 3), (i * 9) % 255, np.uint8))
    sink.close()
    state, manifest, _ = sdk_manifest(tmp_path / "x.mp4")
    assert state == "Valid" and manifest["title"] == "x.mp4"  # the movie's name, not its temporary's
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]  # no temporary left
    flip_video_byte(tmp_path / "x.mp4")
    assert sdk_manifest(tmp_path / "x.mp4")[0] == "Invalid"


def test_version_matches_the_addon_manifest():
    import tomllib

    from core import VERSION

    assert tomllib.loads((ROOT / "addon_manifest.toml").read_text())["version"] == VERSION
    assert os.environ["DEEPFAKE_CREDENTIALS"] != str(credentials.config_folder() / "credentials")


def test_a_user_key_others_can_read_is_warned_about(tmp_path):
    import io

    from core.events import Events

    key, cert = _user_chain(tmp_path)
    key.chmod(0o644)
    out = io.StringIO()
    Labeller.start(LabelSettings(key=str(key), cert=str(cert)), D18, "m", Events(jsonl=True, out=out, err=out))
    warnings = [e["message"] for e in events_of(out.getvalue()) if e["event"] == "warning"]
    assert warnings == [f"the signing key {key} can be read by other users (mode 0o644): chmod 600 it"]
