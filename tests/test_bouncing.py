"""The bouncing-ball dataset: containment, energy conservation, rendering, seeding and the HDF5 layout."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import WORKFLOW_CONFIG, call_with_config

from pipeline.data import bouncing, h5io
from pipeline.data.bouncing import RADIUS, build_bouncing, corners, make_polygon, make_split, wall_distances

SIZE, FRAMES, N = 32, 30, 24
POLYGON = make_polygon(np.random.default_rng(0), SIZE)
HALF = RADIUS * SIZE
# pymunk resolves a contact after the shapes touch: within a physics step a wall is entered by at most
# speed / SUBSTEPS (3.2 / 20 px here), which the bounce then undoes.
DEPTH = 0.25


@pytest.fixture(scope="module", params=bouncing.SHAPES)
def split(request) -> tuple[str, dict[str, np.ndarray]]:
    shape = request.param
    return shape, make_split(
        N, split="train", polygon=POLYGON, shape=shape, frames=FRAMES, image_size=SIZE, seed=0
    )


def test_polygon_is_convex_and_counter_clockwise():
    edges = np.roll(POLYGON, -1, axis=0) - POLYGON
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    assert (turns > 0).all()
    assert (wall_distances(np.array([SIZE / 2, SIZE / 2]), POLYGON) > 0).all()


def test_the_shape_stays_inside_the_polygon_on_every_frame(split):
    shape, arrays = split
    if shape == "ball":
        clearance = wall_distances(arrays["position"], POLYGON) - HALF  # (N, T, K)
    else:
        clearance = wall_distances(corners(arrays["position"], HALF), POLYGON)  # (N, T, 4, K)
    assert clearance.min() > -DEPTH, f"{shape} entered a wall by {-clearance.min():.3f} px"


def test_the_shape_bounces_and_keeps_its_kinetic_energy(split):
    shape, arrays = split
    velocity = arrays["velocity"]  # (N, T, 2)
    energy = (velocity**2).sum(-1)  # (N, T), mass 1 (twice the kinetic energy)
    change = np.abs(energy / energy[:, :1] - 1)
    assert change.max() < 2e-3, f"{shape}: kinetic energy changed by up to {change.max():.2e}"
    assert np.median(change.max(axis=1)) < 1e-9, "most sequences conserve it to rounding"
    turned = np.abs(np.diff(velocity, axis=1)).max(axis=(1, 2)) > 1e-3
    assert turned.mean() > 0.5, f"only {turned.mean():.0%} of the {shape} sequences hit a wall"
    free = np.abs(np.diff(velocity, axis=1)).max(axis=-1) < 1e-9  # (N, T-1): no bounce in between
    moved = np.diff(arrays["position"], axis=1)  # (N, T-1, 2)
    # Straight flight between bounces; a graze may add pymunk's push out of a wall (a few 1/1000 px).
    np.testing.assert_allclose(moved[free], velocity[:, :-1][free], atol=0.02)


def test_frames_show_the_shape_where_the_trajectory_puts_it(split):
    shape, arrays = split
    frames = arrays["frames"]  # (N, T, H, W, 1)
    assert frames.shape == (N, FRAMES, SIZE, SIZE, 1) and frames.dtype == np.uint8
    assert set(np.unique(frames)) == {0, 255}
    lit = frames[..., 0] > 0
    area = np.pi * HALF**2 if shape == "ball" else (2 * HALF) ** 2
    assert np.abs(lit.sum((2, 3)) - area).max() < 0.35 * area
    rows, cols = np.indices((SIZE, SIZE)) + 0.5
    centre_x = (lit * cols).sum((2, 3)) / lit.sum((2, 3))
    centre_y = (lit * rows).sum((2, 3)) / lit.sum((2, 3))
    np.testing.assert_allclose(centre_x, arrays["position"][..., 0], atol=0.6)
    np.testing.assert_allclose(centre_y, arrays["position"][..., 1], atol=0.6)


def test_seeded_and_independent_of_the_split_size():
    a = make_split(3, split="test", polygon=POLYGON, shape="ball", frames=5, image_size=SIZE, seed=4)
    b = make_split(5, split="test", polygon=POLYGON, shape="ball", frames=5, image_size=SIZE, seed=4)
    other = make_split(3, split="test", polygon=POLYGON, shape="ball", frames=5, image_size=SIZE, seed=5)
    np.testing.assert_array_equal(a["position"], b["position"][:3])
    assert not np.allclose(a["position"], other["position"])


def test_build_writes_the_seqdis_layout(tmp_path):
    path = tmp_path / "bouncing.h5"
    build_bouncing(
        output=path, train_sequences=4, test_sequences=2, frames=6, image_size=SIZE, seed=1, shape="square"
    )
    assert h5io.read_attrs(path)["name"] == "bouncing"
    assert tuple(h5io.read_attrs(path)["frame_shape"]) == (6, SIZE, SIZE, 1)
    assert [f.name for f in h5io.read_factors(path)] == ["shape"]
    test = h5io.read_split(path, "test")
    assert len(test) == 2 and (test.factors["shape"] == bouncing.SHAPES.index("square")).all()
    assert test.trajectories["position"].shape == test.trajectories["velocity"].shape == (2, 6, 2)
    with pytest.raises(ValueError, match="triangle"):
        call_with_config(
            build_bouncing,
            WORKFLOW_CONFIG,
            output=path,
            train_sequences=1,
            test_sequences=1,
            shape="triangle",
        )
