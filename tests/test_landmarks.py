"""Landmark pseudo labels (S3VAE section 4.2) on a real GRID clip whose words are timed, FAN's weights
handling, and the stage and its figure on a tiny dataset made of that clip."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORKFLOW_CONFIG, call_with_config

from pipeline.data import h5io
from pipeline.data.faces import FACES_INSTALL, FaceDetector, crop, read_video
from pipeline.labels import landmarks
from pipeline.report.landmarks import most_moving_clip, plot_landmarks

CLIP = "id2_vcd_swwp2s"  # "set white with p two soon", timed in swwp2s.align (1000 units = one frame)


@pytest.fixture(scope="module")
def grid_samples(mirror: Path) -> Path:
    folder = mirror / "grid-samples"
    if not (folder / f"{CLIP}.mpg").is_file():
        pytest.skip(f"the mirror {mirror} has no grid-samples/{CLIP}.mpg")
    return folder


@pytest.fixture(scope="module")
def faces(grid_samples: Path) -> np.ndarray:
    """The clip's 75 frames cropped as build_grid crops them: (75, 64, 64, 3) uint8."""
    frames = read_video(grid_samples / f"{CLIP}.mpg")
    box = FaceDetector().box(frames, margin=WORKFLOW_CONFIG["faces"]["margin"])
    return crop(frames, box, WORKFLOW_CONFIG["grid"]["image_size"])


@pytest.fixture(scope="module")
def clip_labels(faces: np.ndarray) -> dict[str, np.ndarray]:
    """FaceMesh over the whole clip as one sequence."""
    return landmarks.label_clips(faces[None], landmarks.FaceMeshDetector(), desc=CLIP)


@pytest.fixture(scope="module")
def speech(grid_samples: Path) -> dict[str, np.ndarray]:
    """Frame indices of the leading silence, the words and the trailing silence."""
    rows = [line.split() for line in (grid_samples / "swwp2s.align").read_text().splitlines()]
    assert rows[0][2] == rows[-1][2] == "sil" and all(row[2] != "sil" for row in rows[1:-1])
    words_start, words_end = int(rows[1][0]) / 1000, int(rows[-1][0]) / 1000  # 12.25, 55.25
    t = np.arange(75)
    return {
        "lead": t[t < words_start],
        "words": t[(t >= words_start) & (t < words_end)],
        "trail": t[t >= words_end],
    }


def test_facemesh_finds_the_face_in_every_frame(clip_labels):
    assert clip_labels["face_found"].shape == (1, 75) and clip_labels["face_found"].all()
    points = clip_labels["landmarks"]
    assert points.shape == (1, 75, 478, 2) and points.dtype == np.float16
    assert 0 < points.min() and points.max() < 64  # pixels of the 64 x 64 crop
    assert clip_labels["distances"].shape == (1, 75, 3) and clip_labels["distances"].dtype == np.float32


def test_the_lips_move_during_the_words(clip_labels, speech):
    """The mouth rests slightly open in the leading silence (its gap there is larger than during the words:
    0.14 vs 0.083 measured), so the level alone says little. The gap moves during the words (mean
    |frame-to-frame change| 0.025, against 0.0046 and 0.0048 in the leading and trailing silence) and is
    closed after them (0.009)."""
    lips = clip_labels["distances"][0, :, 2]
    change = {part: np.abs(np.diff(lips[frames])).mean() for part, frames in speech.items()}
    assert change["words"] > 2.5 * change["lead"] and change["words"] > 2.5 * change["trail"], change
    level = {part: lips[frames].mean() for part, frames in speech.items()}
    assert level["words"] > 3 * level["trail"], level  # measured 0.083 vs 0.009


def test_blinks_dip_both_eyes_at_the_same_frames(clip_labels):
    """Measured: each eye's gap is below 0.8 x its median at frames 26-30 (31), 43-47 and 71-74, three blinks
    (14 of the 15 frames shared), and the two eye curves correlate at 0.98."""
    eyes = clip_labels["distances"][0, :, :2]
    closed = [set(np.flatnonzero(eye < 0.8 * np.median(eye))) for eye in eyes.T]
    assert len(closed[0] & closed[1]) >= 0.7 * len(closed[0] | closed[1]), closed
    blinks = np.flatnonzero(np.diff(sorted(closed[0] & closed[1])) > 1).size + 1
    assert blinks >= 2, closed
    assert np.corrcoef(eyes.T)[0, 1] > 0.8


def test_each_clip_is_tracked_on_its_own(faces):
    """The tracker is reset between clips: a clip's labels do not depend on the clip labelled before it."""
    detector = landmarks.FaceMeshDetector()
    after_another, _ = detector(np.stack([faces[40:55], faces[:15]]))
    alone, _ = detector(faces[None, :15])
    np.testing.assert_array_equal(after_another[1], alone[0])


def test_landmark_distances_on_hand_made_points():
    points = np.zeros((2, 68, 2), dtype=np.float32)  # face 1 has no landmarks
    points[0, 36], points[0, 45] = (10, 20), (50, 20)  # eye corners: 40 px apart
    points[0, [37, 38, 41, 40]] = (20, 18), (24, 18), (20, 22), (24, 24)  # right eye: gaps 4 and 6
    points[0, [43, 44, 47, 46]] = (36, 19), (40, 19), (36, 21), (40, 21)  # left eye: gaps 2 and 2
    points[0, 62], points[0, 66] = (30, 40), (30, 43)  # inner lips: 3
    np.testing.assert_allclose(
        landmarks.landmark_distances(points, landmarks.IBUG68), [[5 / 40, 2 / 40, 3 / 40], [0, 0, 0]]
    )
    mesh = np.zeros((478, 2), dtype=np.float32)
    mesh[33], mesh[263], mesh[159], mesh[145], mesh[13], mesh[14] = (
        (0, 0),
        (30, 40),
        (5, 5),
        (5, 8),
        (9, 9),
        (9, 15),
    )
    np.testing.assert_allclose(landmarks.landmark_distances(mesh, landmarks.FACEMESH), [3 / 50, 0, 6 / 50])
    with pytest.raises(ValueError, match="478, 2"):
        landmarks.landmark_distances(points, landmarks.FACEMESH)


def test_heatmap_peaks_move_a_quarter_pixel_towards_the_higher_neighbour():
    heatmaps = torch.zeros(1, 3, 64, 64)
    heatmaps[0, 0, 0, 5] = 1  # on the border: no step
    heatmaps[0, 1, 10, 20], heatmaps[0, 1, 10, 21], heatmaps[0, 1, 9, 20] = 1, 0.5, 0.3  # right and up
    heatmaps[0, 2, 30, 40], heatmaps[0, 2, 30, 39], heatmaps[0, 2, 30, 41] = (
        1,
        0.2,
        0.2,
    )  # x even: no step; y down
    heatmaps[0, 2, 31, 40] = 0.1
    expected = [[5.5, 0.5], [20.75, 10.25], [40.5, 30.75]]  # pixel centres at +0.5
    np.testing.assert_allclose(landmarks.heatmap_points(heatmaps)[0].numpy(), expected)


# --- FAN -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fan_state_dict(tmp_path_factory) -> Path:
    from face_alignment.models import FAN

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fan") / "fan4.pth"
    torch.save(FAN(4).state_dict(), path)
    return path


def test_the_weights_are_those_face_alignment_downloads():
    from face_alignment.api import models_urls

    assert landmarks.FAN_WEIGHTS[0] == models_urls["2DFAN-4"]


def test_fan_from_a_configured_state_dict(fan_state_dict, faces):
    detector = landmarks.landmark_detector("face_alignment", fan_weights=fan_state_dict, device="cpu")
    labels = landmarks.label_clips(faces[None, :3], detector, desc="fan")
    assert labels["landmarks"].shape == (1, 3, 68, 2) and labels["landmarks"].dtype == np.float16
    assert labels["distances"].shape == (1, 3, 3) and labels["face_found"].tolist() == [[1, 1, 1]]
    assert 0 <= labels["landmarks"].min() and labels["landmarks"].max() <= 64


class _FixedHeatmaps(torch.nn.Module):
    """Every frame's 68 heatmaps peak at heatmap pixel (x=10, y=20), whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heatmaps = torch.zeros(x.shape[0], 68, 64, 64)
        heatmaps[:, :, 20, 10] = 1
        return heatmaps


def test_fan_from_a_torchscript_archive_maps_heatmaps_to_frame_pixels(tmp_path):
    path = tmp_path / "fan.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated; earlier face_alignment ships it
        torch.jit.save(torch.jit.trace(_FixedHeatmaps(), torch.zeros(1, 3, 256, 256)), path)
    detector = landmarks.landmark_detector("face_alignment", fan_weights=path, device="cpu")
    frames = np.zeros((1, 2, 128, 128, 3), dtype=np.uint8)  # a heatmap pixel is 2 frame pixels here
    points, found = detector(frames)
    np.testing.assert_allclose(points, np.broadcast_to([21.0, 41.0], (1, 2, 68, 2)))
    assert found.all()


def test_missing_fan_weights_name_the_path_the_url_and_mediapipe(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        landmarks.landmark_detector("face_alignment", fan_weights=None, device="cpu")
    cached = tmp_path / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    for text in (str(cached), landmarks.FAN_WEIGHTS[0], "landmarks.backend: mediapipe"):
        assert text in str(err.value)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere.pth'}.*2DFAN4-11f355bf06"):
        landmarks.load_fan(tmp_path / "nowhere.pth")


def test_files_that_are_not_fan_weights_fail_clearly(tmp_path, monkeypatch):
    stray = tmp_path / "notes.pth"
    stray.write_text("not weights")
    with pytest.raises(ValueError, match="notes.pth is not a PyTorch state dict"):
        landmarks.load_fan(stray)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="other.pth does not hold FAN\\(4\\) weights"):
        landmarks.load_fan(other)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = landmarks.fan_cache_paths()[0]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="damaged or incomplete"):
        landmarks.load_fan()


def test_a_missing_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(ImportError) as err:
        landmarks.landmark_detector("mediapipe", fan_weights=None, device="cpu")
    assert FACES_INSTALL in str(err.value)
    monkeypatch.setitem(sys.modules, "face_alignment.models", None)
    (tmp_path / "fan.pth").write_bytes(b"")
    with pytest.raises(ImportError, match="face_alignment") as err:
        landmarks.load_fan(tmp_path / "fan.pth")
    assert FACES_INSTALL in str(err.value)


def test_unknown_backend():
    with pytest.raises(ValueError, match="'dlib2'.*face_alignment"):
        landmarks.landmark_detector("dlib2", fan_weights=None, device="cpu")


# --- the stage and its figure --------------------------------------------------------------------------
def test_label_landmarks_and_its_figure(faces, tmp_path):
    blank = np.full((15, 64, 64, 3), 128, dtype=np.uint8)  # no face: distances 0, masked
    clips = {"train": np.stack([faces[0:15], faces[15:30], blank, faces[30:45]]), "test": faces[None, 60:75]}
    splits = {
        s: {"frames": c, "identity": np.zeros(len(c)), "sequence_id": np.zeros(len(c))}
        for s, c in clips.items()
    }
    dataset, output = tmp_path / "tiny.h5", tmp_path / "labels" / "landmarks.h5"
    h5io.write_dataset(
        dataset, name="tiny", factors=[h5io.Factor("identity", "static", ("a",))], splits=splits
    )

    call_with_config(landmarks.label_landmarks, WORKFLOW_CONFIG, dataset=dataset, output=output)

    attrs = h5io.read_attrs(output)
    assert (attrs["dataset"], attrs["labeler"], attrs["backend"]) == (
        "tiny",
        "landmarks-mediapipe",
        "mediapipe",
    )
    assert list(attrs["distance_names"]) == ["right_eye", "left_eye", "lips"]
    assert attrs["detection_rate_train"] == 0.75 and attrs["detection_rate_test"] == 1.0
    for split, n in (("train", 4), ("test", 1)):
        labels = h5io.read_labels(output, split)
        assert labels["distances"].shape == (n, 15, 3) and labels["distances"].dtype == np.float32
        assert labels["landmarks"].shape == (n, 15, 478, 2) and labels["landmarks"].dtype == np.float16
        assert labels["face_found"].shape == (n, 15) and labels["face_found"].dtype == np.uint8
    train = h5io.read_labels(output, "train")
    assert (
        not train["face_found"][2].any()
        and not train["distances"][2].any()
        and not train["landmarks"][2].any()
    )
    found = train["distances"][train["face_found"].astype(bool)]  # (45, 3)
    np.testing.assert_allclose(attrs["distance_mean"], found.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(attrs["distance_std"], found.std(axis=0), rtol=1e-4)
    recomputed = landmarks.landmark_distances(train["landmarks"][[0, 1, 3]], landmarks.FACEMESH)
    np.testing.assert_allclose(train["distances"][[0, 1, 3]], recomputed, atol=2e-3)  # from float16 points

    figure = tmp_path / "figures" / "landmarks.png"
    plot_landmarks(dataset=dataset, labels=output, output=figure)
    assert figure.stat().st_size > 10_000


def test_the_figure_shows_the_clip_that_moves_most():
    distances = np.zeros((3, 4, 3), dtype=np.float32)
    distances[1, :, 2] = [0.1, 0.3, 0.1, 0.3]  # moves, but only where no face is found
    distances[2, :, 0] = [0.1, 0.12, 0.1, 0.12]
    found = np.ones((3, 4), dtype=np.uint8)
    found[1, 1:] = 0
    assert most_moving_clip(distances, found) == 2
