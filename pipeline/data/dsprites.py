"""Build "moving dSprites", the procedurally generated dataset of the S3VAE slides' manipulation figures.

Each clip shows one sprite on a black canvas (default 8 frames of 64 x 64 RGB). Nothing is downloaded: the
clips are drawn from a seed. The factors, in the order the dataset file lists them:

- `motion` (dynamic, 8 classes, the judge's motion head): the compass direction of the sprite's net
  displacement over the clip, `MOTIONS[k]` heading k * 45 degrees counter-clockwise from screen right.
  The centre drifts along that direction with a smoothly varying speed (it never stops or turns back)
  plus one full period of a sinusoidal wobble across it, so the path is a smooth S-curve whose first to
  last frame displacement points exactly along the class direction.
- `rotation` (dynamic, 3 classes): `clockwise`, `counterclockwise` (as seen on screen) or `none`. A
  rotating sprite turns at a random speed of 0.15-0.35 rad per frame that swells and fades smoothly by up
  to 40%, always below the 45 degrees per frame at which the square's symmetry would hide the direction.
- `shape` (static): square, ellipse (axis ratio 0.55, so its rotation shows) or heart (the parametric
  heart curve x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t, tip down at angle 0).
- `color` (static): one of 6 saturated colours, `COLORS`; edge pixels are that colour scaled by their
  coverage (`COLOR_TABLES`), so every lit pixel of a clip is a multiple of its colour.
- `scale` (static): small, medium or large: the radius of the circle bounding the sprite about its centre
  (and so every rotation of it) is `SCALES` times the image side.

Per-frame states are stored as trajectories: `position` (N, T, 2) float32, the sprite's centre as (x, y)
in pixels (pixel centres at integers, y down), and `angle` (N, T) float32, its rotation in radians,
counter-clockwise on screen. The centre keeps the bounding circle 2 pixels inside the canvas on every
frame, so anti-aliased edges never reach the border. `sequence_id` is the clip's static combination,
`(shape * 6 + color) * 3 + scale`, as Sprites' is its character.

Factors are drawn uniformly and independently per clip; train and test draw from independent streams
spawned from the seed (`numpy.random.SeedSequence`), so a seed gives byte-identical files. Sprites are
polygons filled by OpenCV on a 4x supersampled canvas and averaged down, a whole chunk of clips per call.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import FromConfig
from pipeline.data.factors import Factor
from pipeline.data.h5io import GENERATION_DIRECTIONS, JUDGE_SPLIT, Protocol, write_dataset

logger = logging.getLogger(__name__)

MOTIONS = ("right", "up_right", "up", "up_left", "left", "down_left", "down", "down_right")
ROTATIONS = ("clockwise", "counterclockwise", "none")
SHAPES = ("square", "ellipse", "heart")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
SCALES = {"small": 0.11, "medium": 0.15, "large": 0.19}  # bounding radius / image side
FACTORS = (
    Factor("motion", "dynamic", MOTIONS),
    Factor("rotation", "dynamic", ROTATIONS),
    Factor("shape", "static", SHAPES),
    Factor("color", "static", tuple(COLORS)),
    Factor("scale", "static", tuple(SCALES)),
)
PROTOCOL = Protocol(GENERATION_DIRECTIONS, score_head="motion", title="Moving dSprites")  # as Sprites

N_TRAIN, N_TEST = 9000, 2664  # as many clips as Sprites
N_FRAMES, IMAGE_SIZE = 8, 64
MARGIN = 2.0  # pixels from the bounding circle to the border: edge pixels lit by anti-aliasing stay inside
PATH_LENGTH = (0.5, 0.8)  # net displacement, as a share of the room the bounding circle has to move in
WOBBLE = 0.08  # largest sideways wobble amplitude, as a share of the net displacement
SPEED_SWING = 0.3  # the drift speed varies by up to this share around its mean
ANGULAR_SPEED = (0.15, 0.35)  # rad per frame
ANGULAR_SWING = 0.4  # the angular speed varies by up to this share around its mean
SUPERSAMPLE = 4  # cv2's own LINE_AA fill snaps edges to whole rows, which made vertical motion jerky
SUBPIXEL_BITS = 4  # cv2.fillPoly `shift`: vertices at 1/16 pixel of the supersampled canvas
CHUNK = 100  # clips per render_clips call: a 52 MB supersampled canvas at 64 x 64


def _unit_outlines() -> dict[str, np.ndarray]:
    """Each shape's outline (P, 2) as (x, y), y down, centred on the origin, bounding radius exactly 1."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    heart = np.stack(
        [16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))],
        axis=1,
    )
    heart -= (heart.max(axis=0) + heart.min(axis=0)) / 2  # the bounding box's centre, which rotation keeps
    corner = np.sqrt(0.5)
    outlines = {
        "square": np.array([[-corner, -corner], [corner, -corner], [corner, corner], [-corner, corner]]),
        "ellipse": np.stack([np.cos(t[::2]), 0.55 * np.sin(t[::2])], axis=1),
        "heart": heart,
    }
    return {name: points / np.linalg.norm(points, axis=1).max() for name, points in outlines.items()}


OUTLINES = _unit_outlines()
# COLOR_TABLES[c][coverage] is colour c scaled by the coverage 0..255, rounded: (colours, 256, 3) uint8.
COLOR_TABLES = np.rint(
    np.arange(256)[None, :, None] * np.asarray(list(COLORS.values()))[:, None, :] / 255
).astype(np.uint8)


def _check_sizes(*, frames: int, image_size: int, **sequences: int) -> None:
    for name, count in sequences.items():
        if count < 1:
            raise ValueError(f"{name}={count}: set dsprites.{name} in config.yaml to at least 1")
    if frames < 2:
        raise ValueError(f"frames={frames}: a motion needs at least 2 frames; set dsprites.frames >= 2")
    if image_size < 32:
        raise ValueError(f"image_size={image_size}: sprites need room to move; set dsprites.image_size >= 32")


def bounding_radius(scale: np.ndarray, image_size: int) -> np.ndarray:
    """Radius in pixels of the circle bounding the sprite about its centre, for scale class indices."""
    return np.asarray(list(SCALES.values()))[scale] * image_size


def sample_clips(rng: np.random.Generator, n: int, *, frames: int, image_size: int) -> dict[str, np.ndarray]:
    """Draw the factors and the per-frame `position` (n, T, 2) and `angle` (n, T) of n clips."""
    labels = {f.name: rng.integers(0, f.n_classes, n) for f in FACTORS}
    tau = np.linspace(0.0, 1.0, frames)  # (T,) clip time from first to last frame
    radius = bounding_radius(labels["scale"], image_size)  # (n,)
    low = radius + MARGIN  # lowest centre coordinate on both axes; the highest is image_size - 1 - low
    room = image_size - 1 - 2 * low  # (n,)

    heading = labels["motion"] * (np.pi / 4)
    along = np.stack([np.cos(heading), -np.sin(heading)], axis=1)  # (n, 2) unit vector, y down
    across = np.stack([-along[:, 1], along[:, 0]], axis=1)  # (n, 2)
    length = room * rng.uniform(*PATH_LENGTH, n)
    # s(tau) = tau + b / 2pi sin(2 pi tau) runs from 0 to 1 with speed 1 + b cos(2 pi tau) > 0.
    swing = rng.uniform(-SPEED_SWING, SPEED_SWING, (n, 1))
    progress = tau + swing / (2 * np.pi) * np.sin(2 * np.pi * tau)  # (n, T)
    # One full period, so the wobble ends where it started and the net displacement is along the class.
    amplitude = length[:, None] * rng.uniform(-WOBBLE, WOBBLE, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wobble = amplitude * (np.sin(2 * np.pi * tau + phase) - np.sin(phase))  # (n, T)
    path = (length[:, None] * progress)[..., None] * along[:, None] + wobble[..., None] * across[:, None]
    # Shrinking a path keeps its direction: the rare long diagonal S-curve is scaled to fit the room.
    extent = path.max(axis=1) - path.min(axis=1)  # (n, 2)
    path *= np.minimum(1.0, room / extent.max(axis=1).clip(min=1e-9))[:, None, None]
    extent = path.max(axis=1) - path.min(axis=1)
    start = low[:, None] - path.min(axis=1) + rng.uniform(0, 1, (n, 2)) * (room[:, None] - extent)
    position = start[:, None] + path  # (n, T, 2)

    steps = np.arange(frames)  # angular speed w(t) = w0 (1 + a sin(2 pi t / (T - 1) + phi)), integrated
    w0 = rng.uniform(*ANGULAR_SPEED, (n, 1))
    a = rng.uniform(0, ANGULAR_SWING, (n, 1))
    phi = rng.uniform(0, 2 * np.pi, (n, 1))
    period = (frames - 1) / (2 * np.pi)
    turned = w0 * (steps + a * period * (np.cos(phi) - np.cos(steps / period + phi)))  # (n, T)
    sign = np.array([-1.0, 1.0, 0.0])[labels["rotation"]]  # ROTATIONS order; counter-clockwise is +
    angle = rng.uniform(-np.pi, np.pi, (n, 1)) + sign[:, None] * turned
    return labels | {"position": position.astype(np.float32), "angle": angle.astype(np.float32)}


def render_clips(
    *,
    shape: np.ndarray,
    color: np.ndarray,
    scale: np.ndarray,
    position: np.ndarray,
    angle: np.ndarray,
    image_size: int = IMAGE_SIZE,
) -> np.ndarray:
    """Clips (n, T, S, S, 3) uint8 of S = `image_size` for class indices (n,) and trajectories (n, T, ...).

    The n x T frames are tiled on one canvas at SUPERSAMPLE times the resolution, filled with one
    cv2.fillPoly call per shape and box-averaged down (cv2.INTER_AREA): anti-aliased edges, and centres
    resolved to a fraction of a pixel on both axes. Sprites keep MARGIN pixels from their tile's edges, so
    none bleeds into a neighbour.
    """
    n, frames = angle.shape
    size = image_size
    big = size * SUPERSAMPLE
    canvas = np.zeros((n * big, frames * big), dtype=np.uint8)  # clip i, frame t at tile (i, t)
    tile_origin = np.stack(np.meshgrid(np.arange(frames), np.arange(n)), axis=-1) * size  # (n, T, 2) as x, y
    radius = bounding_radius(scale, size)[:, None, None, None]  # (n, 1, 1, 1)
    cos, sin = np.cos(angle)[..., None], np.sin(angle)[..., None]  # (n, T, 1)
    for index, name in enumerate(SHAPES):
        rows = np.flatnonzero(shape == index)
        if not len(rows):
            continue
        x, y = OUTLINES[name].T  # (P,)
        # Counter-clockwise on screen with y down: (x, y) -> (x cos + y sin, -x sin + y cos).
        turned = np.stack([x * cos[rows] + y * sin[rows], -x * sin[rows] + y * cos[rows]], axis=-1)
        points = (position[rows] + tile_origin[rows])[:, :, None] + radius[rows] * turned  # (m, T, P, 2)
        # Pixel centres sit at integers on both canvases: small pixel p spans big pixels K p .. K p + K - 1.
        fixed = np.rint(((points + 0.5) * SUPERSAMPLE - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(canvas, list(fixed.reshape(-1, len(x), 2)), 255, cv2.LINE_8, SUBPIXEL_BITS)
    small = cv2.resize(canvas, (frames * size, n * size), interpolation=cv2.INTER_AREA)
    coverage = small.reshape(n, size, frames, size).transpose(0, 2, 1, 3)  # (n, T, S, S)
    clips = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    for row in range(n):  # a table lookup per clip is 3x faster than one broadcast over the chunk
        np.take(COLOR_TABLES[color[row]], coverage[row], axis=0, out=clips[row])
    return clips


def generate_split(
    rng: np.random.Generator, n: int, *, frames: int, image_size: int, desc: str = "dsprites"
) -> dict[str, np.ndarray]:
    """Sample and render n clips: the arrays `write_dataset` takes for one split."""
    clips = sample_clips(rng, n, frames=frames, image_size=image_size)
    rendered = np.empty((n, frames, image_size, image_size, 3), dtype=np.uint8)
    with tqdm(total=n, desc=desc, unit="clip", disable=n < 2 * CHUNK) as progress:
        for start in range(0, n, CHUNK):
            rows = slice(start, start + CHUNK)
            rendered[rows] = render_clips(
                shape=clips["shape"][rows],
                color=clips["color"][rows],
                scale=clips["scale"][rows],
                position=clips["position"][rows],
                angle=clips["angle"][rows],
                image_size=image_size,
            )
            progress.update(len(rendered[rows]))
    statics = np.ravel_multi_index(
        (clips["shape"], clips["color"], clips["scale"]), (len(SHAPES), len(COLORS), len(SCALES))
    )
    return clips | {"frames": rendered, "sequence_id": statics}


def build_dsprites(
    *,
    output: Path | str,
    train_sequences: int = FromConfig("dsprites.train_sequences"),
    test_sequences: int = FromConfig("dsprites.test_sequences"),
    judge_train_sequences: int = FromConfig("dsprites.judge_train_sequences"),
    frames: int = FromConfig("dsprites.frames"),
    image_size: int = FromConfig("dsprites.image_size"),
    seed: int = FromConfig("seed"),
    compression_level: int = 4,
) -> None:
    """Generate moving dSprites (train, test and, when `judge_train_sequences` > 0, the judge's own clips
    `judge_train`, from independent streams of `seed`) and write `output`."""
    _check_sizes(
        frames=frames, image_size=image_size, train_sequences=train_sequences, test_sequences=test_sequences
    )
    if judge_train_sequences < 0:
        raise ValueError(
            f"judge_train_sequences={judge_train_sequences}: set dsprites.judge_train_sequences >= 0"
        )
    start = time.perf_counter()
    # spawn(3)'s first two streams are spawn(2)'s: the judge's clips leave train and test as they were
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    sizes = {"train": train_sequences, "test": test_sequences, JUDGE_SPLIT: judge_train_sequences}
    splits = {
        split: generate_split(rng, n, frames=frames, image_size=image_size, desc=f"dsprites {split}")
        for (split, n), rng in zip(sizes.items(), streams, strict=True)
        if n > 0
    }
    elapsed = time.perf_counter() - start
    total = sum(sizes.values())
    logger.info("generated %d sequences in %.1f s (%.0f sequences/s)", total, elapsed, total / elapsed)
    write_dataset(
        output,
        name="dsprites",
        factors=list(FACTORS),
        splits=splits,
        trajectories=("position", "angle"),
        protocol=PROTOCOL,
        compression_level=compression_level,
    )
    elapsed = time.perf_counter() - start
    logger.info("wrote %s in %.1f s (%.0f sequences/s with writing)", output, elapsed, total / elapsed)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(build_dsprites)
