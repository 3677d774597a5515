"""Flow labels on a synthetic clip whose motion is known: a textured bar moving right by 2 px a frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import WORKFLOW_CONFIG, call_with_config
from torchvision.models.optical_flow import raft_small

from pipeline.data import h5io
from pipeline.labels import flow

T, SIZE, STEP = 4, 64, 2
# The bar stays inside cells (1, 1) and (1, 2) of a 4 x 4 grid in every frame: DIS smooths flow into the
# textureless background, so a bar entering a third cell would blur which cells move most.
TOP, HEIGHT, LEFT, WIDTH = 20, 12, 18, 24


def bar_left(t: int) -> int:
    return LEFT + STEP * t


def moving_bar(seed: int = 0) -> np.ndarray:
    """(1, T, 64, 64, 3) uint8: a noise-textured bar on black, moving right by STEP px per frame."""
    texture = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = np.zeros((1, T, SIZE, SIZE, 3), dtype=np.uint8)
    for t in range(T):
        frames[0, t, TOP : TOP + HEIGHT, bar_left(t) : bar_left(t) + WIDTH] = texture
    return frames


def bar_cells(t: int, *, grid: int, k: int) -> set[int]:
    """The k cells holding most of the bar in frame t: where the motion is."""
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[TOP : TOP + HEIGHT, bar_left(t) : bar_left(t) + WIDTH] = True
    cell = SIZE // grid
    counts = mask.reshape(grid, cell, grid, cell).sum(axis=(1, 3)).ravel()
    return set(np.argsort(-counts, kind="stable")[:k].tolist())


@pytest.fixture(scope="module")
def dis_flow() -> np.ndarray:
    return flow.compute_flow(moving_bar(), backend="dis")


def test_dis_flow_follows_the_bar(dis_flow):
    assert dis_flow.shape == (1, T - 1, SIZE, SIZE, 2) and dis_flow.dtype == np.float32
    for t in range(T - 1):
        # A 3 px margin keeps the bar's edges, where the flow is smoothed into the background, out.
        inside = dis_flow[0, t, TOP + 3 : TOP + HEIGHT - 3, bar_left(t) + 3 : bar_left(t) + WIDTH - 3]
        assert np.median(inside[..., 0]) == pytest.approx(STEP, abs=0.25)
        assert np.abs(np.median(inside[..., 1])) < 0.25
        far = dis_flow[0, t, 52:]  # 20 px below the bar
        assert np.linalg.norm(far, axis=-1).max() < 0.25


def test_dis_flow_is_the_same_on_any_number_of_threads(monkeypatch):
    """label_flow splits the sequences over OMP_NUM_THREADS threads, each with its own DIS instance: the
    flow of every pair is the one a single thread computes."""
    clips = np.concatenate([moving_bar(seed) for seed in range(5)])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = flow.compute_flow(clips, backend="dis")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    np.testing.assert_array_equal(flow.compute_flow(clips, backend="dis"), one)


def test_topk_cells_pick_the_moving_cells(dis_flow):
    grid, k = 4, 2
    cells, magnitude = flow.topk_cells(dis_flow, grid=grid, topk=k)
    assert cells.shape == (1, T, k) and cells.dtype == np.int16
    assert magnitude.shape == (1, T, grid, grid) and magnitude.dtype == np.float32
    for t in range(T):
        # frame t's label is the flow into it, pair t-1 -> t (pair 0 -> 1 for the first frame)
        assert set(cells[0, t].tolist()) == bar_cells(max(t - 1, 0), grid=grid, k=k)
        picked = magnitude[0, t].ravel()[cells[0, t]]
        assert np.all(np.diff(picked) <= 0)  # by decreasing magnitude
        assert picked.min() >= np.delete(magnitude[0, t].ravel(), cells[0, t]).max()


def test_topk_cells_on_a_hand_made_field():
    # 2 x 2 grid of 4 x 4 cells; each cell holds one constant vector, so its mean magnitude is exact.
    vectors = np.array(
        [
            [[(3, 4), (0, 1)], [(0, 0), (6, 8)]],  # pair 0: magnitudes 5, 1, 0, 10
            [[(0, 2), (0, 0)], [(2, 0), (0, 7)]],  # pair 1: magnitudes 2, 0, 2, 7 (a tie: lower index first)
        ],
        dtype=np.float32,
    )  # (T-1, G, G, 2)
    field = vectors.repeat(4, axis=1).repeat(4, axis=2)[None]  # (1, T-1=2, 8, 8, 2)
    cells, magnitude = flow.topk_cells(field, grid=2, topk=3)
    np.testing.assert_array_equal(cells[0], [[3, 0, 1], [3, 0, 1], [3, 0, 2]])
    np.testing.assert_allclose(magnitude[0, 1], [[5, 1], [0, 10]])  # frame 1 <- pair 0
    np.testing.assert_allclose(magnitude[0, 2], [[2, 0], [2, 7]])  # frame 2 <- pair 1


def test_frame_t_is_labelled_with_the_flow_into_it():
    """q(z_t | x_<=t) cannot see frame t+1: frame t's label is pair t-1 -> t, the first frame's 0 -> 1."""
    rng = np.random.default_rng(1)
    field = rng.normal(size=(2, 3, 8, 8, 2)).astype(np.float32)
    cells, magnitude = flow.topk_cells(field, grid=4, topk=5)
    assert cells.shape == (2, 4, 5)
    per_pair = np.linalg.norm(field, axis=-1).reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5))  # (N, T-1, G, G)
    for t in range(1, 4):
        np.testing.assert_allclose(magnitude[:, t], per_pair[:, t - 1], rtol=1e-6)
    np.testing.assert_array_equal(cells[:, 0], cells[:, 1])
    np.testing.assert_array_equal(magnitude[:, 0], magnitude[:, 1])
    assert not np.array_equal(magnitude[:, 1], magnitude[:, 2])


@pytest.mark.parametrize(("shape", "grid", "topk"), [((1, 1, 60, 64, 2), 8, 1), ((1, 1, 8, 8, 2), 2, 5)])
def test_topk_cells_rejects_bad_settings(shape, grid, topk):
    with pytest.raises(ValueError, match=f"flow.(grid={grid}|topk={topk})"):
        flow.topk_cells(np.zeros(shape, dtype=np.float32), grid=grid, topk=topk)


def test_unknown_backend():
    with pytest.raises(ValueError, match="'farneback'"):
        flow.compute_flow(moving_bar(), backend="farneback")


def test_label_flow_end_to_end(tmp_path):
    sizes = {"train": 3, "test": 2}
    splits = {
        split: {
            "frames": np.concatenate([moving_bar(seed) for seed in range(n)]),
            "sequence_id": np.arange(n),
            "dummy": np.zeros(n),
        }
        for split, n in sizes.items()
    }
    dataset, output = tmp_path / "tiny.h5", tmp_path / "labels" / "tiny_flow.h5"
    factors = [h5io.Factor("dummy", "static", ("only",))]
    h5io.write_dataset(dataset, name="tiny", factors=factors, splits=splits)

    call_with_config(
        flow.label_flow, WORKFLOW_CONFIG, dataset=dataset, output=output, grid=4, topk=3, chunk=2
    )

    attrs = h5io.read_attrs(output)
    assert attrs["dataset"] == "tiny" and attrs["labeler"] == "flow-dis" and attrs["backend"] == "dis"
    assert (attrs["grid"], attrs["topk"]) == (4, 3)
    assert (attrs["direction_grid"], attrs["moving_threshold"]) == (
        3,
        WORKFLOW_CONFIG["flow"]["moving_threshold"],
    )
    for split, n in sizes.items():
        labels = h5io.read_labels(output, split)
        assert labels["flow_topk"].shape == (n, T, 3) and labels["flow_topk"].dtype == np.int16
        assert labels["flow_magnitude"].shape == (n, T, 4, 4) and labels["flow_magnitude"].dtype == np.float16
        for t in range(T):
            assert set(labels["flow_topk"][0, t, :2].tolist()) == bar_cells(min(t, T - 2), grid=4, k=2)
        directions = labels["flow_direction"]
        assert directions.shape == (n, T, 9) and directions.dtype == np.int8
        assert (directions[:, 0] == -1).all() and (directions[0, 1:, 4] == 0).all()  # the bar moves right
        assert labels["flow_speed"].shape == (n, T, 3, 3)


def test_label_flow_checks_the_grid_first(tmp_path):
    splits = {s: {"frames": moving_bar(), "sequence_id": [0], "dummy": [0]} for s in ("train", "test")}
    h5io.write_dataset(
        tmp_path / "tiny.h5", name="tiny", factors=[h5io.Factor("dummy", "static", ("only",))], splits=splits
    )
    with pytest.raises(ValueError, match="flow.grid=5"):
        call_with_config(
            flow.label_flow,
            WORKFLOW_CONFIG,
            dataset=tmp_path / "tiny.h5",
            output=tmp_path / "out.h5",
            grid=5,
            topk=1,
        )
    assert not (tmp_path / "out.h5").exists()


def test_load_raft_without_weights_explains_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        flow.load_raft("raft_small")
    message = str(err.value)
    assert flow.RAFT_WEIGHTS["raft_small"].url in message
    assert str(tmp_path / "checkpoints") in message
    assert "flow.backend: dis" in message and "flow.raft_weights" in message


def test_load_raft_rejects_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="flow.raft_weights"):
        flow.load_raft("raft_small", tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(ValueError, match="not a PyTorch state dict"):
        flow.load_raft("raft_small", junk)
    # A file under torchvision's name must match the sha256 prefix in that name.
    damaged = tmp_path / flow.raft_cache_path("raft_small").name
    damaged.write_text("truncated")
    with pytest.raises(ValueError, match="sha256"):
        flow.load_raft("raft_small", damaged)


def test_raft_small_runs_on_a_tiny_clip(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)
    with pytest.raises(ValueError, match="does not hold raft_large weights"):
        flow.load_raft("raft_large", weights)
    frames = moving_bar()[:, :2]  # N=1, T=2, 64 x 64: upsampled to RAFT's 128 px minimum and back
    result = flow.compute_flow(frames, backend="raft_small", raft_weights=weights)
    assert result.shape == (1, 1, SIZE, SIZE, 2) and result.dtype == np.float32
    assert np.isfinite(result).all()


# --- the authors' direction labels ------------------------------------------------------------------------
# (dx, dy) of a step in each bin: bin 0 is +x (rightwards), bin 2 is +y (downwards in the image)
BIN_STEPS = [(2, 0), (2, 2), (0, 2), (-2, 2), (-2, 0), (-2, -2), (0, -2), (2, -2)]


@pytest.mark.parametrize("direction", range(8))
def test_a_uniform_flow_gives_its_bin_in_every_cell_but_frame_0(direction: int):
    field = np.zeros((1, T - 1, SIZE, SIZE, 2), np.float32)
    field[...] = BIN_STEPS[direction]
    directions, speeds = flow.direction_cells(field, grid=3, moving_threshold=0.5)
    assert directions.shape == (1, T, 9) and directions.dtype == np.int8
    assert (directions[0, 0] == -1).all() and (speeds[0, 0] == 0).all()  # no flow enters frame 0
    assert (directions[0, 1:] == direction).all()
    assert speeds[0, 1:] == pytest.approx(np.hypot(*BIN_STEPS[direction]))


def test_a_cell_moves_from_the_threshold_on_and_uneven_cells_average_their_own_pixels():
    field = np.zeros((1, 1, SIZE, SIZE, 2), np.float32)
    field[0, 0, :21, :21, 0] = 0.5  # cell 0 of 64 = 21 + 22 + 21 px: rightwards at 0.5 px, the threshold
    field[0, 0, 21:43, 21:43, 1] = -1.0  # the middle cell, 22 x 22 px: upwards at 1 px
    field[0, 0, 43:, 60:, 0] = -2.0  # 4 of cell 8's 21 columns: leftwards at 2 * 4 / 21 px
    directions, speeds = flow.direction_cells(field, grid=3, moving_threshold=0.5)
    assert directions[0, 1].tolist() == [0, -1, -1, -1, 6, -1, -1, -1, -1]
    assert speeds[0, 1, 2, 2] == pytest.approx(2 * 4 / 21)
    lower = flow.direction_cells(field, grid=3, moving_threshold=0.35)[0]
    assert lower[0, 1, 8] == 4


def test_a_mirrored_clip_has_mirrored_direction_labels():
    """Left-right mirroring swaps a row's cells end for end and maps bin b to (4 - b) mod 8, exactly, also
    on uneven cells (64 px into 3: 21, 22, 21)."""
    field = np.random.default_rng(0).normal(size=(2, T - 1, SIZE, SIZE, 2)).astype(np.float32)
    mirrored = field[:, :, :, ::-1] * np.array([-1, 1], np.float32)
    directions = flow.direction_cells(field, grid=3, moving_threshold=0.01)[0]
    got = flow.direction_cells(mirrored, grid=3, moving_threshold=0.01)[0]
    expected = np.where(directions >= 0, (4 - directions) % 8, -1).reshape(2, T, 3, 3)[..., ::-1]
    assert (directions[:, 1:] >= 0).mean() > 0.5 and np.array_equal(got, expected.reshape(2, T, 9))
    assert np.array_equal(flow.mirror_directions(directions, 3), got)
    assert flow.mirror_agreement(directions, got, 3) == 1.0


def moving_square(dx: int, dy: int, seed: int = 0) -> np.ndarray:
    """(1, T, 64, 64, 3): a noise-textured 16 px square on black, stepping (dx, dy) px a frame, which stays
    inside the middle cell of a 3 x 3 grid."""
    texture = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    frames = np.zeros((1, T, SIZE, SIZE, 3), dtype=np.uint8)
    for t in range(T):
        top, left = 24 + dy * (t - 1), 24 + dx * (t - 1)
        frames[0, t, top : top + 16, left : left + 16] = texture
    return frames


@pytest.mark.parametrize("direction", range(8))
def test_dis_labels_a_square_moving_in_each_direction(direction: int):
    """The square's cell gets its direction in every frame and moves fastest. DIS carries some of the motion
    into the black background around it (0.1 to 1.2 px here against 1.8 to 2.7 px): neighbours that pass the
    threshold get the same direction, never another one."""
    field = flow.compute_flow(moving_square(*BIN_STEPS[direction]), backend="dis")
    directions, speeds = flow.direction_cells(field, grid=3, moving_threshold=0.2)
    assert (directions[0, 1:, 4] == direction).all(), directions[0]
    assert (speeds[0, 1:].reshape(T - 1, 9).argmax(axis=1) == 4).all()
    assert set(np.unique(directions[0, 1:]).tolist()) <= {-1, direction}


def test_the_direction_figure_pairs_a_characters_left_and_right_walk(tmp_path):
    """plot_flow_directions finds a character's walk_left and walk_right clips and another character's
    walk_right; labels made mirror images agree everywhere, the other clip's do not."""
    from pipeline.data.sprites import ACTION_CLASSES
    from pipeline.report.flow import mirrored_pair, plot_flow_directions

    rng = np.random.default_rng(0)
    actions = [ACTION_CLASSES.index(name) for name in ("walk_front", "walk_left", "walk_right", "walk_right")]
    split = {
        "frames": rng.integers(0, 256, (4, T, 16, 16, 3), dtype=np.uint8),
        "sequence_id": np.array([7, 7, 8, 7]),  # character 7's walk_right is the last clip
        "action": np.array(actions),
    }
    dataset, labels = tmp_path / "sprites.h5", tmp_path / "flow.h5"
    factors = [h5io.Factor("action", "dynamic", ACTION_CLASSES)]
    h5io.write_dataset(dataset, name="sprites", factors=factors, splits={"train": split, "test": split})
    directions = rng.integers(-1, 8, (4, T, 9)).astype(np.int8)
    directions[:, 0] = -1
    directions[3] = flow.mirror_directions(directions[1], 3)
    h5io.write_labels(labels, attrs={"direction_grid": 3}, labels={"test": {"flow_direction": directions}})

    assert mirrored_pair(h5io.read_split(dataset, "test"), ACTION_CLASSES) == (1, 3, 2)
    assert flow.mirror_agreement(directions[1], directions[3], 3) == 1.0
    assert flow.mirror_agreement(directions[1], directions[2], 3) < 0.5
    plot_flow_directions(dataset=str(dataset), labels=str(labels), output=str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
