"""Stage `label_landmarks`: face-landmark pseudo labels (S3VAE, Zhu et al. CVPR 2020, section 4.2).

On faces S3VAE's dynamic factor prediction regresses three distances per frame from z_t: the gap between
the upper and lower eyelid of each eye and the gap between the upper and lower lip. Each is divided here by
the distance between the outer eye corners (the inter-ocular distance), so that the targets do not depend
on how large the face is in the crop. Frames where no face is found get 0 and `face_found` 0; the model
masks them out.

Backends (`landmarks.backend`):
- "mediapipe" (default): MediaPipe's FaceMesh, 478 points with the attention-refined eyes and lips
  (`refine_landmarks`), whose model ships inside the wheel: offline, CPU, about 2 ms a 64 x 64 frame.
  It runs in tracking mode (static_image_mode=False): after the first frame it starts from the previous
  frame's landmarks, which keeps the points steady from frame to frame. The tracker is reset before each
  clip, so that a clip's labels depend on its own frames only, not on the clip labelled before it
  (clips overlap and come in the dataset's order); a reset costs about 1 ms, a new FaceMesh about 15 ms.
- "face_alignment": Bulat & Tzimiropoulos's FAN (2DFAN4, the 68 iBUG points), the detector S3VAE cites,
  from the `face_alignment` package; its weights come from the torch hub cache or `landmarks.fan_weights`
  and are never downloaded here (`load_fan`). The dataset's frames are already face crops, so FAN runs on
  the whole frame (resized to its 256 x 256 input) without face_alignment's detectors, which need weights
  of their own. FAN always answers, so every frame counts as found.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.config import FromConfig, resolve_device
from pipeline.data import h5io
from pipeline.data.faces import FACES_INSTALL, import_mediapipe
from pipeline.labels.weights import check_sha256, hub_cache_path, load_state_dict_file, url_file_name

log = logging.getLogger(__name__)

DISTANCE_NAMES = ("right_eye", "left_eye", "lips")  # right and left: the subject's


@dataclass(frozen=True)
class Scheme:
    """Which landmarks (0-based indices of one detector's numbering) give the three distances."""

    points: int  # P, landmarks per face
    gaps: tuple[tuple[tuple[int, int], ...], ...]  # per distance, its (upper, lower) pairs, averaged
    corners: tuple[int, int]  # outer corners of the right and the left eye: the inter-ocular distance

    @property
    def used(self) -> tuple[int, ...]:
        """Every landmark a distance reads."""
        return tuple(i for pairs in self.gaps for pair in pairs for i in pair) + self.corners


FACEMESH = Scheme(478, gaps=(((159, 145),), ((386, 374),), ((13, 14),)), corners=(33, 263))
IBUG68 = Scheme(68, gaps=(((37, 41), (38, 40)), ((43, 47), (44, 46)), ((62, 66),)), corners=(36, 45))
SCHEMES = {"mediapipe": FACEMESH, "face_alignment": IBUG68}


def landmark_distances(points: np.ndarray, scheme: Scheme) -> np.ndarray:
    """Eyelid and inner-lip gaps over the inter-ocular distance: points (..., P, 2) -> (..., 3) float32.

    A face without landmarks (all points 0, so no inter-ocular distance) gets 0.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.shape[-2:] != (scheme.points, 2):
        raise ValueError(f"expected landmarks (..., {scheme.points}, 2), got {points.shape}")

    def length(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)

    gaps = np.stack([np.mean([length(*pair) for pair in pairs], axis=0) for pairs in scheme.gaps], axis=-1)
    ocular = length(*scheme.corners)[..., None]
    return np.divide(gaps, ocular, out=np.zeros_like(gaps), where=ocular > 0)


class Detector(Protocol):
    """Frames uint8 (N, T, H, W, 3) -> points float32 (N, T, P, 2) in pixels (x, y; the frame's top-left
    corner is (0, 0), pixel centres at +0.5) and found bool (N, T); `scheme` numbers the points."""

    scheme: Scheme

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class FaceMeshDetector:
    """MediaPipe's FaceMesh, tracking within a clip and reset between clips (module doc)."""

    scheme = FACEMESH

    def __init__(self):
        mediapipe = import_mediapipe()
        self._mesh = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True
        )

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, t, h, w, _ = frames.shape
        points = np.zeros((n, t, self.scheme.points, 2), dtype=np.float32)
        found = np.zeros((n, t), dtype=bool)
        for i in range(n):
            self._mesh.reset()
            for j in range(t):
                faces = self._mesh.process(np.ascontiguousarray(frames[i, j])).multi_face_landmarks
                if faces:
                    points[i, j] = [(p.x * w, p.y * h) for p in faces[0].landmark]
                    found[i, j] = True
        return points, found


# --- FAN (face_alignment) ----------------------------------------------------------------------------
# 2DFAN4's weights as face_alignment downloads them (its api.py: models_urls), newest first. Each file name
# carries the first hex digits of its sha256, as torch.hub names files.
FAN_WEIGHTS = (
    "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",  # 1.5: FAN(4) state dict
    "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",  # before: TorchScript
)
FAN_INPUT = 256  # FAN's input side; its heatmaps are a quarter of it


def fan_cache_paths() -> list[Path]:
    """Where torch.hub (and so face_alignment's own loader) keeps each release of the weights."""
    return [hub_cache_path(url) for url in FAN_WEIGHTS]


def _fan_path(weights_path: str | os.PathLike | None) -> Path:
    if weights_path is not None:
        path = Path(weights_path)
        if not path.exists():
            raise FileNotFoundError(
                f"landmarks.fan_weights is {path}, which does not exist: point it at 2DFAN4's weights "
                f"({FAN_WEIGHTS[0]}), or unset it to use the torch hub cache"
            )
        return path
    for path in fan_cache_paths():
        if path.exists():
            return path
    path, older = fan_cache_paths()
    raise FileNotFoundError(
        f"no FAN weights at {path} (nor {older.name}, the TorchScript archive of earlier face_alignment "
        f"releases, beside it); this code never downloads: offline it would hang. Download {FAN_WEIGHTS[0]} "
        f"on a machine with internet and copy it to {path}, or set landmarks.fan_weights to its path. "
        "Offline, use `landmarks.backend: mediapipe`, whose model ships in its wheel."
    )


def _fan_state_dict_model(path: Path) -> torch.nn.Module:
    try:
        from face_alignment.models import FAN
    except ImportError as err:
        raise ImportError(f"the face_alignment backend needs face_alignment: {FACES_INSTALL}") from err
    return load_state_dict_file(FAN(4), path, "FAN(4)", FAN_WEIGHTS[0])


def _is_torchscript(path: Path) -> bool:
    # torch.jit.save writes a zip archive with constants.pkl, which torch.save's archives lack
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(Path(name).name == "constants.pkl" for name in archive.namelist())


def load_fan(weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """2DFAN4 in eval mode on the CPU from local weights (never downloaded): `weights_path` when given,
    else the torch hub cache. A TorchScript archive (face_alignment before 1.5) or a state dict for
    `face_alignment.models.FAN(4)` (1.5)."""
    path = _fan_path(weights_path)
    if path.name in {url_file_name(url) for url in FAN_WEIGHTS}:
        check_sha256(path, next(url for url in FAN_WEIGHTS if url_file_name(url) == path.name))
    if _is_torchscript(path):
        with warnings.catch_warnings():  # deprecated (torch 2.14 warns), yet the only reader of these
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    else:
        model = _fan_state_dict_model(path)
    log.info("loaded FAN weights from %s", path)
    return model.eval()


def heatmap_points(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) heatmaps -> (B, K, 2) peaks (x, y) in heatmap pixels, pixel centres at +0.5.

    The argmax, moved a quarter pixel towards the higher of its two neighbours along each axis (away from
    the border), as face_alignment's `get_preds_fromhm`.
    """
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    index = flat.argmax(dim=-1)  # (B, K)
    y, x = index // w, index % w

    def at(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return flat.gather(-1, (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).unsqueeze(-1)).squeeze(-1)

    inside = ((x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)).to(heatmaps.dtype)
    step_x = torch.sign(at(y, x + 1) - at(y, x - 1)) * inside
    step_y = torch.sign(at(y + 1, x) - at(y - 1, x)) * inside
    return torch.stack([x + 0.5 + 0.25 * step_x, y + 0.5 + 0.25 * step_y], dim=-1)


class FanDetector:
    """FAN on whole frames (they are face crops), `batch_size` frames per forward pass."""

    scheme = IBUG68

    def __init__(self, model: torch.nn.Module, device: str, batch_size: int = 32):
        self._model, self._device, self._batch_size = model.to(device), torch.device(device), batch_size

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, t, h, w, c = frames.shape
        flat = frames.reshape(n * t, h, w, c)
        points = np.empty((n * t, self.scheme.points, 2), dtype=np.float32)
        for start in range(0, len(flat), self._batch_size):
            rows = slice(start, start + self._batch_size)
            x = (
                torch.from_numpy(flat[rows]).to(self._device).permute(0, 3, 1, 2).float() / 255
            )  # (B, 3, H, W)
            x = F.interpolate(x, size=(FAN_INPUT, FAN_INPUT), mode="bilinear", align_corners=False)
            heatmaps = self._model(x)  # FAN(4): one (B, 68, 64, 64) per hourglass, the last the finest
            heatmaps = heatmaps[-1] if isinstance(heatmaps, (list, tuple)) else heatmaps
            if heatmaps.shape[1:] != (self.scheme.points, FAN_INPUT // 4, FAN_INPUT // 4):
                raise ValueError(
                    f"the FAN weights give heatmaps {tuple(heatmaps.shape[1:])}, not (68, 64, 64): they are "
                    f"not 2DFAN4's, use {FAN_WEIGHTS[0]}"
                )
            scale = torch.tensor([w, h], device=self._device) / heatmaps.shape[-1]  # heatmap px -> frame px
            points[rows] = (heatmap_points(heatmaps.float()) * scale).cpu().numpy()
        return points.reshape(n, t, self.scheme.points, 2), np.ones((n, t), dtype=bool)


def landmark_detector(backend: str, *, fan_weights: str | os.PathLike | None, device: str) -> Detector:
    """Set `backend` up once (its model, its weights)."""
    if backend == "mediapipe":
        if device != "cpu":
            log.info("MediaPipe's FaceMesh runs on the CPU; device '%s' is not used", device)
        return FaceMeshDetector()
    if backend == "face_alignment":
        return FanDetector(load_fan(fan_weights), device)
    raise ValueError(f"unknown landmarks.backend '{backend}': choose one of {sorted(SCHEMES)}")


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"face landmarks need RGB frames, uint8 (N, T, H, W, 3); got {frames.dtype} {frames.shape}"
        )


def label_clips(
    frames: np.ndarray, detector: Detector, *, desc: str, chunk: int = 64
) -> dict[str, np.ndarray]:
    """The label arrays of one split (`distances`, `landmarks`, `face_found`), `chunk` clips at a time."""
    _check_frames(frames)
    n, t = frames.shape[:2]
    scheme = detector.scheme
    distances = np.zeros((n, t, len(DISTANCE_NAMES)), dtype=np.float32)
    landmarks = np.zeros((n, t, scheme.points, 2), dtype=np.float16)
    found = np.zeros((n, t), dtype=np.uint8)
    start_time = time.perf_counter()
    with tqdm(total=n, desc=desc, unit="clip") as bar:
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            points, found_here = detector(frames[rows])
            distances[rows] = np.where(found_here[..., None], landmark_distances(points, scheme), 0)
            landmarks[rows], found[rows] = points, found_here
            bar.update(len(points))
    ms = 1000 * (time.perf_counter() - start_time) / max(n * t, 1)
    log.info("%s: face found in %.1f%% of %d frames, %.1f ms a frame", desc, 100 * found.mean(), n * t, ms)
    return {"distances": distances, "landmarks": landmarks, "face_found": found}


def distance_stats(labels: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """Mean and std of each distance over the frames with a face (the model's standardisation)."""
    found = labels["face_found"].astype(bool)
    if not found.any():
        raise ValueError("no face was found in any training frame: the labels would carry no signal")
    values = labels["distances"][found].astype(np.float64)  # (frames, 3)
    return values.mean(axis=0).tolist(), values.std(axis=0).tolist()


def label_landmarks(
    *,
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    backend: str = FromConfig("landmarks.backend"),
    fan_weights: str | os.PathLike | None = FromConfig("landmarks.fan_weights"),
    device: str = FromConfig("device"),
) -> None:
    """Write the landmark labels of every split of the face `dataset` to `output`: per frame the eyelid
    and inner-lip distances (`distances`), the landmarks (`landmarks`) and `face_found`."""
    name = h5io.read_attrs(dataset)["name"]
    detector = landmark_detector(backend, fan_weights=fan_weights, device=resolve_device(device))
    labels = {
        split: label_clips(h5io.read_split(dataset, split).frames, detector, desc=f"landmarks {name}/{split}")
        for split in h5io.model_splits(dataset)
    }
    mean, std = distance_stats(labels["train"])
    attrs = {
        "dataset": name,
        "labeler": f"landmarks-{backend}",
        "backend": backend,
        "distance_names": list(DISTANCE_NAMES),
        "distance_mean": mean,
        "distance_std": std,
        **{f"detection_rate_{split}": float(arrays["face_found"].mean()) for split, arrays in labels.items()},
    }
    h5io.write_labels(output, attrs=attrs, labels=labels)
    log.info("wrote %s (train distances: mean %s, std %s)", output, np.round(mean, 3), np.round(std, 3))


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(label_landmarks)
