"""Stochastic Moving MNIST (Denton & Fergus, ICML 2018), the SMMNIST column of S3VAE's Table 1.

Two MNIST digits, scaled to 32 x 32, move on a black 64 x 64 canvas. Each keeps a constant integer
velocity (each component in [-4, 4] pixels per frame) until it crosses a wall; it is then put back on the
wall and leaves it with a new random velocity: the component normal to that wall points away from it
(1 to 4 pixels) and the other component is drawn afresh. The new velocity is what makes the dynamics
stochastic; the deterministic variant would only flip the sign. Overlapping digits add up, saturating at
255. Training sequences use training digits, test sequences test digits.

Stored factors: `digit_a` and `digit_b` (static, 10 classes each, group `digits`: a judge recognises which
digits a clip shows, not their order). Trajectories: `position` (N, T, 2, 2) pixel offsets (row, col) of
each digit's top-left corner as drawn, `velocity` (N, T, 2, 2) the velocity that moves it to frame t + 1;
the root attribute `object_size` is a digit's side (SMMNIST's judge finds each digit's centre from them).

MNIST's IDX archives come from the download stage. A mirror may hold only a known partial copy of the
training images (pipeline/data/download.py); the reader then uses the complete images it holds and logs how
many. Any other truncated archive is an error.
"""

from __future__ import annotations

import logging
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import FromConfig
from pipeline.data.download import SOURCES, verified_files
from pipeline.data.factors import Factor
from pipeline.data.h5io import JUDGE_SPLIT, Protocol, write_dataset

logger = logging.getLogger(__name__)

DIGIT_CLASSES = tuple(str(d) for d in range(10))
# S3VAE scores SMMNIST with z_f kept only, on the order-free pair of digits (pipeline/evaluate/heads.py)
PROTOCOL = Protocol(("fixed_static",), score_head="digits", title="Stochastic moving MNIST")
_IDX_DTYPE = 0x08  # unsigned byte, the only IDX element type MNIST uses


@dataclass(frozen=True)
class MovingDigitsSpec:
    frames: int = 15
    image_size: int = 64
    digit_size: int = 32
    digits: int = 2
    max_speed: int = 4


def read_idx(path: Path | str, *, partial: bool = False) -> np.ndarray:
    """A gzip'd IDX file (MNIST's format) as a uint8 array (n, *item_shape).

    With `partial`, a truncated archive gives the complete items it holds; without, it is an error.
    """
    path = Path(path)
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing; tolerates a missing end
    try:
        raw = stream.decompress(path.read_bytes())
    except zlib.error as err:
        raise ValueError(
            f"{path} is not a gzip'd IDX file ({err}): fetch it again (rule download_source)"
        ) from err
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _IDX_DTYPE:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    item = int(np.prod(shape[1:], dtype=np.int64))
    complete = min(len(body) // item, shape[0])
    if not stream.eof or complete < shape[0]:
        if not partial:
            raise ValueError(
                f"{path} is truncated: it holds {complete} of its {shape[0]} items. Fetch the full "
                "archive again (the download stage checks its sha256); only a mirror's pinned partial "
                "copy may be read partially"
            )
        logger.warning("%s: partial copy, using its %d complete items of %d", path, complete, shape[0])
    return np.frombuffer(body[: complete * item], dtype=np.uint8).reshape(complete, *shape[1:])


def load_mnist(resources: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) and labels (n,) of `split` from a folder the download stage verified.

    A training set read from the mirror's partial copy has fewer images than labels; the labels are cut
    to the images.
    """
    resources = Path(resources)
    verified = verified_files(resources / "SHA256SUMS")
    prefix = {"train": "train", "test": "t10k"}[split]
    images_file = next(f for f in SOURCES["mnist"].files if f.path == f"{prefix}-images-idx3-ubyte.gz")
    if images_file.path in verified:
        images = read_idx(resources / images_file.path)
    elif images_file.partial_copy is not None and images_file.partial_copy.path in verified:
        images = read_idx(resources / images_file.partial_copy.path, partial=True)
    else:
        raise FileNotFoundError(
            f"{resources / 'SHA256SUMS'} lists no {images_file.path}: fetch MNIST again "
            "(rule download_source)"
        )
    labels = read_idx(resources / f"{prefix}-labels-idx1-ubyte.gz")
    logger.info("MNIST %s: %d images, %d labels", split, len(images), len(labels))
    return images, labels[: len(images)]


def _new_speed(rng: np.random.Generator, max_speed: int) -> int:
    return int(rng.integers(-max_speed, max_speed + 1))


def move_digits(n: int, spec: MovingDigitsSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (n, T, digits, 2) of bouncing digits, as drawn at every frame."""
    limit = spec.image_size - spec.digit_size
    positions = np.empty((n, spec.frames, spec.digits, 2), dtype=np.int64)
    velocities = np.empty_like(positions)
    for seq in range(n):
        for digit in range(spec.digits):
            pos = rng.integers(0, limit + 1, size=2)
            vel = np.array([_new_speed(rng, spec.max_speed), _new_speed(rng, spec.max_speed)])
            for t in range(spec.frames):
                crossed = (pos < 0) | (pos > limit)
                if crossed.any():
                    # Away from every wall crossed (a corner hits two); any direction along the other.
                    for axis in range(2):
                        if crossed[axis]:
                            away = 1 if pos[axis] < 0 else -1
                            vel[axis] = away * int(rng.integers(1, spec.max_speed + 1))
                        else:
                            vel[axis] = _new_speed(rng, spec.max_speed)
                    pos = pos.clip(0, limit)
                positions[seq, t, digit] = pos
                velocities[seq, t, digit] = vel
                pos = pos + vel
    return positions, velocities


def render(digits: np.ndarray, positions: np.ndarray, image_size: int) -> np.ndarray:
    """Frames (n, T, S, S, 1) uint8: digits (n, digits, d, d) drawn at `positions` (n, T, digits, 2)."""
    n, T, n_digits, _ = positions.shape
    d = digits.shape[-1]
    canvas = np.zeros((n, T, image_size, image_size), dtype=np.uint16)
    for seq in range(n):
        for t in range(T):
            for k in range(n_digits):
                row, col = positions[seq, t, k]
                canvas[seq, t, row : row + d, col : col + d] += digits[seq, k]
    return np.minimum(canvas, 255).astype(np.uint8)[..., None]


def generate_split(
    images: np.ndarray, labels: np.ndarray, n: int, spec: MovingDigitsSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`n` sequences drawn from the digit `images` (m, 28, 28) with their `labels`."""
    picks = rng.integers(0, len(images), size=(n, spec.digits))  # (n, digits) MNIST indices
    scaled = np.stack(
        [
            cv2.resize(img, (spec.digit_size, spec.digit_size), interpolation=cv2.INTER_LINEAR)
            for img in images[picks.ravel()]
        ]
    ).reshape(n, spec.digits, spec.digit_size, spec.digit_size)
    positions, velocities = move_digits(n, spec, rng)
    frames = np.concatenate(
        [
            render(scaled[i : i + 256], positions[i : i + 256], spec.image_size)
            for i in tqdm(range(0, n, 256), desc="render", unit="256 seq")
        ]
    )
    digit_labels = labels[picks]  # (n, digits)
    return {
        "frames": frames,
        "sequence_id": np.arange(n),
        **{f"digit_{chr(ord('a') + k)}": digit_labels[:, k] for k in range(spec.digits)},
        "position": positions.astype(np.float32),
        "velocity": velocities.astype(np.float32),
    }


def build_smmnist(
    *,
    mnist_dir: Path | str,
    output: Path | str,
    train_sequences: int = FromConfig("smmnist.train_sequences"),
    test_sequences: int = FromConfig("smmnist.test_sequences"),
    judge_train_sequences: int = FromConfig("smmnist.judge_train_sequences"),
    frames: int = FromConfig("smmnist.frames"),
    seed: int = FromConfig("seed"),
    compression_level: int = 4,
) -> None:
    """Generate SMMNIST's splits from the MNIST files in `mnist_dir` and write them to `output` (HDF5).

    `judge_train_sequences` > 0 adds the split `judge_train`: more clips of training digits, drawn from a
    stream of their own, that only the judge trains on (a 90% judge needs more than the models' split)."""
    spec = MovingDigitsSpec(frames=frames)
    start = time.perf_counter()
    train_seed, test_seed, judge_seed = np.random.SeedSequence(seed).spawn(3)
    plan = [("train", "train", train_sequences, train_seed), ("test", "test", test_sequences, test_seed)]
    if judge_train_sequences > 0:
        plan.append((JUDGE_SPLIT, "train", judge_train_sequences, judge_seed))
    splits = {}
    for split, digits, n, split_seed in plan:
        images, labels = load_mnist(mnist_dir, digits)
        splits[split] = generate_split(images, labels, n, spec, np.random.default_rng(split_seed))
    elapsed = time.perf_counter() - start
    total = train_sequences + test_sequences + judge_train_sequences
    logger.info("generated %d sequences in %.1f s (%.0f sequences/s)", total, elapsed, total / elapsed)
    factors = [
        Factor(f"digit_{chr(ord('a') + k)}", "static", DIGIT_CLASSES, group="digits")
        for k in range(spec.digits)
    ]
    write_dataset(
        output,
        name="smmnist",
        factors=factors,
        splits=splits,
        trajectories=("position", "velocity"),
        protocol=PROTOCOL,
        attrs={"object_size": spec.digit_size},
        compression_level=compression_level,
    )
    logger.info("wrote %s in %.1f s", output, time.perf_counter() - start)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(build_smmnist)
