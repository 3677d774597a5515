"""Build the bouncing-ball dataset of DSVAE section 4.3 (stochastic vs deterministic dynamics, Fig. 8).

A ball (or a square whose rotation is disabled) moves without gravity or friction inside an irregular
convex polygon and bounces elastically off its walls, simulated with pymunk (elasticity 1, no damping), so
the kinetic energy stays constant. Each sequence starts from a random position inside the polygon and a
random velocity; frames are binary 1-channel images of the shape alone (the walls are not drawn).

The polygon is one per dataset, drawn from the seed: a model can learn where the invisible walls are, which
is what lets it predict the bounces of the imputation task. Its vertices lie at random angles on a circle
(so it is convex), with no gap between neighbours above a quarter turn.

World units are pixels: x is the column, y the row, and pixel (row, col) covers [col, col + 1) x
[row, row + 1). Trajectories are stored per frame: `position` (N, T, 2) in pixels and `velocity` (N, T, 2)
in pixels per frame, both (x, y). Sequence i of a split is drawn from NumPy's generator seeded with
(seed, split, i), so the first n sequences do not depend on how many are built.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pymunk

from pipeline.config import FromConfig
from pipeline.data.factors import Factor
from pipeline.data.h5io import write_dataset

logger = logging.getLogger(__name__)

SHAPES = ("ball", "square")
SPLITS = ("train", "test")
RADIUS = 0.1  # the ball's radius and the square's half side, in image sides (3.2 px at 32 x 32)
SPEED = (0.03, 0.1)  # range of the initial speed, in image sides per frame (1 to 3.2 px at 32 x 32)
POLYGON_RADIUS = 0.47  # the polygon's circumscribed circle, in image sides
POLYGON_VERTICES = 7
SUBSTEPS = 20  # physics steps per frame: short steps keep wall contacts shallow (< 0.15 px at 32 x 32)


def make_polygon(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Vertices (K, 2) of an irregular convex polygon, counter-clockwise in (x, y), centred in the image."""
    while True:
        angles = np.sort(rng.uniform(0, 2 * np.pi, POLYGON_VERTICES))
        gaps = np.diff(angles, append=angles[0] + 2 * np.pi)
        if gaps.max() <= np.pi / 2 and gaps.min() >= np.pi / 10:  # no sliver, no flat side near the centre
            break
    centre, radius = image_size / 2, POLYGON_RADIUS * image_size
    return np.stack([centre + radius * np.cos(angles), centre + radius * np.sin(angles)], axis=1)


def wall_distances(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Signed distance of points (..., 2) to every wall of a counter-clockwise convex polygon (..., K):
    positive inside."""
    start, edge = polygon, np.roll(polygon, -1, axis=0) - polygon  # (K, 2) each
    inward = np.stack([-edge[:, 1], edge[:, 0]], axis=1) / np.linalg.norm(edge, axis=1, keepdims=True)
    return ((points[..., None, :] - start) * inward).sum(-1)


def corners(position: np.ndarray, half: float) -> np.ndarray:
    """The square's four corners (..., 4, 2) around centres (..., 2)."""
    offsets = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    return position[..., None, :] + offsets


def random_start(
    rng: np.random.Generator, polygon: np.ndarray, shape: str, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A position whose shape clears every wall by a pixel, and a velocity of random direction and speed."""
    reach = RADIUS * image_size * (math.sqrt(2) if shape == "square" else 1.0)  # the farthest point
    while True:
        position = rng.uniform(0, image_size, 2)
        if wall_distances(position, polygon).min() >= reach + 1.0:
            break
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*SPEED) * image_size
    return position, speed * np.array([np.cos(angle), np.sin(angle)])


def simulate(
    polygon: np.ndarray, shape: str, position: np.ndarray, velocity: np.ndarray, frames: int, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (T, 2) of the shape at every frame, the first being the start."""
    space = pymunk.Space()
    space.gravity = (0.0, 0.0)
    space.damping = 1.0  # no velocity loss: pymunk's damping is the fraction kept per second
    walls = [
        pymunk.Segment(space.static_body, tuple(a), tuple(b), 0.0)
        for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True)
    ]
    size = RADIUS * image_size
    if shape == "ball":
        body = pymunk.Body(1.0, pymunk.moment_for_circle(1.0, 0.0, size))
        outline = pymunk.Circle(body, size)
    else:
        body = pymunk.Body(1.0, math.inf)  # infinite moment of inertia: the square never rotates
        outline = pymunk.Poly.create_box(body, (2 * size, 2 * size))
    for part in (*walls, outline):
        part.elasticity, part.friction = 1.0, 0.0
    body.position, body.velocity = tuple(position), tuple(velocity)
    space.add(*walls, body, outline)
    positions, velocities = np.empty((frames, 2)), np.empty((frames, 2))
    for t in range(frames):
        positions[t], velocities[t] = body.position, body.velocity
        for _ in range(SUBSTEPS):
            space.step(1.0 / SUBSTEPS)  # one time unit per frame: velocities are in pixels per frame
    return positions, velocities


def render(positions: np.ndarray, shape: str, image_size: int) -> np.ndarray:
    """Binary frames (T, H, W, 1) uint8 (0 or 255): the pixels whose centre lies inside the shape."""
    centres = np.arange(image_size) + 0.5
    dx = centres[None, None, :] - positions[:, 0, None, None]  # (T, 1, W)
    dy = centres[None, :, None] - positions[:, 1, None, None]  # (T, H, 1)
    size = RADIUS * image_size
    inside = dx**2 + dy**2 <= size**2 if shape == "ball" else np.maximum(abs(dx), abs(dy)) <= size
    return (inside[..., None] * 255).astype(np.uint8)


def make_split(
    n: int, *, split: str, polygon: np.ndarray, shape: str, frames: int, image_size: int, seed: int
) -> dict[str, np.ndarray]:
    """The arrays of one split, as `write_dataset` takes them."""
    positions, velocities = np.empty((n, frames, 2)), np.empty((n, frames, 2))
    for i in range(n):
        rng = np.random.default_rng((seed, SPLITS.index(split), i))
        start = random_start(rng, polygon, shape, image_size)
        positions[i], velocities[i] = simulate(polygon, shape, *start, frames, image_size)
    return {
        "frames": np.stack([render(p, shape, image_size) for p in positions]),
        "sequence_id": np.arange(n),
        "shape": np.full(n, SHAPES.index(shape)),
        "position": positions,
        "velocity": velocities,
    }


def build_bouncing(
    *,
    output: str | Path,
    train_sequences: int = FromConfig("bouncing.train_sequences"),
    test_sequences: int = FromConfig("bouncing.test_sequences"),
    frames: int = FromConfig("bouncing.frames"),
    image_size: int = FromConfig("bouncing.image_size"),
    seed: int = FromConfig("seed"),
    shape: str = FromConfig("bouncing.shape"),
) -> None:
    """Simulate and render the dataset (DSVAE: 5000 sequences, 1000 of them test, 30 frames of 32 x 32)
    and write it in the seqdis HDF5 layout with trajectories `position` and `velocity`."""
    if shape not in SHAPES:
        raise ValueError(f"shape '{shape}': use one of {SHAPES}")
    start = time.perf_counter()
    polygon = make_polygon(np.random.default_rng(seed), image_size)
    logger.info("polygon (x, y) vertices: %s", np.round(polygon, 2).tolist())
    splits = {
        split: make_split(
            n, split=split, polygon=polygon, shape=shape, frames=frames, image_size=image_size, seed=seed
        )
        for split, n in (("train", train_sequences), ("test", test_sequences))
    }
    logger.info(
        "simulated %d + %d sequences in %.1f s", train_sequences, test_sequences, time.perf_counter() - start
    )
    write_dataset(
        output,
        name="bouncing",
        factors=[Factor("shape", "static", SHAPES)],
        splits=splits,
        trajectories=("position", "velocity"),
    )
    logger.info("wrote %s in %.1f s", output, time.perf_counter() - start)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(build_bouncing)
