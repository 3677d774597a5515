"""The Sprites recipe (`pipeline.data.sprites`), checked against PIL compositing of the raw sheets."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import WORKFLOW_CONFIG, call_with_config
from PIL import Image

from pipeline.data.h5io import read_protocol
from pipeline.data.sprites import (
    ACTION_CLASSES,
    ATTRIBUTES,
    LAYER_ORDER,
    PROTOCOL,
    SHOES,
    build_sprites,
    character_split,
    decode_character,
    encode_character,
    load_layer,
    render_clip,
)

N_TRAIN, N_TEST = 20, 8  # reduced build; the split itself is checked on all 1296 characters
FORMAL = 1293  # train character 4: dark2 skin, formal pants, formal shirt + tie, white bangs
PLATE = 1135  # train character 1: its plate chest has half-transparent pixels, which test the rounding


@pytest.fixture(scope="module")
def dataset(lpc_sprites: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sprites") / "sprites.h5"
    build_sprites(sheets_dir=lpc_sprites, output=path, train_characters=N_TRAIN, test_characters=N_TEST)
    return path


@functools.cache
def _sheet(path: Path) -> Image.Image:
    return Image.open(path).convert("RGBA")


def _cell(sheets: Path, files: tuple[str, ...], row: int, column: int) -> Image.Image:
    """One 64 x 64 RGBA cell of a layer, its sheets composited in order as the recipe's layer files are."""
    box = (column * 64, row * 64, (column + 1) * 64, (row + 1) * 64)
    cells = [_sheet(sheets / file).crop(box) for file in files]
    layer = cells[0]
    for cell in cells[1:]:
        layer = Image.alpha_composite(layer, cell)
    return layer


def _reference_frame(sheets: Path, character: int, row: int, column: int, *, tie: bool = True) -> np.ndarray:
    """The recipe's frame, composited by PIL on opaque black (optionally leaving out the tie)."""
    variants = decode_character(character)
    layers = [ATTRIBUTES[name][variants[name]].files for name in ATTRIBUTES] + [SHOES.files]
    if not tie:
        layers = [tuple(f for f in files if not f.endswith("tie.png")) for files in layers]
    frame = Image.new("RGBA", (64, 64), "black")
    for files in layers:
        frame = Image.alpha_composite(frame, _cell(sheets, files, row, column))
    return np.asarray(frame)[..., :3]


def test_split_is_the_seed_423_shuffle_of_all_characters():
    train, test = character_split()
    assert (len(train), len(test)) == (1000, 296)
    state = np.random.get_state()
    try:
        np.random.seed(423)
        expected = np.arange(1296)
        np.random.shuffle(expected)
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(np.concatenate([train, test]), expected)
    assert sorted(expected) == list(range(1296))
    assert len(train) * len(ACTION_CLASSES) == 9000 and len(test) * len(ACTION_CLASSES) == 2664


def test_full_build_is_the_default():
    assert WORKFLOW_CONFIG["sprites"] == {"train_characters": 1000, "test_characters": 296}


@pytest.mark.parametrize(
    ("character", "variants"),
    [
        (0, (0, 0, 0, 0)),
        (1, (0, 0, 0, 1)),
        (6, (0, 0, 1, 0)),
        (227, (1, 0, 1, 5)),
        (FORMAL, (5, 5, 5, 3)),
        (1295, (5, 5, 5, 5)),
    ],
)
def test_character_ids_decode_to_nested_loop_order(character: int, variants: tuple[int, ...]):
    decoded = decode_character(character)
    assert tuple(decoded.values()) == variants and list(decoded) == ["skin", "pants", "top", "hair"]
    assert encode_character(**decoded) == character


def test_every_id_round_trips():
    assert [encode_character(**decode_character(c)) for c in range(1296)] == list(range(1296))


def test_layout_and_labels(dataset: Path):
    train, test = character_split()
    with h5py.File(dataset, "r") as f:
        assert f.attrs["name"] == "sprites"
        assert tuple(f.attrs["frame_shape"]) == (8, 64, 64, 3)
        factors = json.loads(f.attrs["factors"])
        assert list(factors) == ["action", "skin", "pants", "top", "hair"]
        assert factors["action"] == {"kind": "dynamic", "classes": list(ACTION_CLASSES), "group": None}
        assert factors["top"]["classes"][5] == "formal_shirt_tie" and factors["skin"]["kind"] == "static"
        for split, ids in (("train", train[:N_TRAIN]), ("test", test[:N_TEST])):
            group = f[split]
            n = len(ids) * 9
            assert group["frames"].shape == (n, 8, 64, 64, 3) and group["frames"].dtype == np.uint8
            np.testing.assert_array_equal(group["sequence_id"][:], np.repeat(ids, 9))
            np.testing.assert_array_equal(group["factors/action"][:], np.tile(np.arange(9), len(ids)))
            for name in ATTRIBUTES:
                expected = [decode_character(c)[name] for c in group["sequence_id"][:]]
                np.testing.assert_array_equal(group[f"factors/{name}"][:], expected)


def test_the_file_carries_its_scoring_protocol(dataset: Path):
    """S3VAE Table 1 scores Sprites in both directions with its IS on the action."""
    with h5py.File(dataset, "r") as f:
        assert json.loads(f.attrs["protocol"]) == {
            "directions": ["fixed_dynamics", "fixed_static"],
            "score_head": "action",
            "title": "Sprites",
        }
    assert read_protocol(dataset) == PROTOCOL


def test_no_frame_is_all_black(dataset: Path):
    with h5py.File(dataset, "r") as f:
        for split in ("train", "test"):
            frames = f[split]["frames"][:]
            assert (frames.reshape(-1, 64 * 64 * 3).max(axis=1) > 0).all()


@pytest.mark.parametrize(
    ("action_class", "frame", "row", "column"),
    [
        ("walk_front", 0, 10, 8),  # walk starts on the last step
        ("walk_front", 3, 10, 3),
        ("spellcast_left", 6, 1, 4),  # spellcast repeats column 4 ...
        ("spellcast_left", 7, 1, 6),  # ... and ends on column 6
        ("slash_right", 7, 15, 0),  # slash ends where it started
    ],
)
def test_stored_frame_equals_pil_composite(
    dataset: Path, lpc_sprites: Path, action_class: str, frame: int, row: int, column: int
):
    with h5py.File(dataset, "r") as f:
        group = f["train"]
        index = int(np.flatnonzero(group["sequence_id"][:] == FORMAL)[ACTION_CLASSES.index(action_class)])
        assert group["factors/action"][index] == ACTION_CLASSES.index(action_class)
        stored = group["frames"][index, frame]
    np.testing.assert_array_equal(stored, _reference_frame(lpc_sprites, FORMAL, row, column))


def test_every_frame_of_a_character_equals_pil_composite(dataset: Path, lpc_sprites: Path):
    assert decode_character(PLATE)["top"] == 3
    rows = {"walk": 8, "spellcast": 0, "slash": 12}
    columns = {
        "walk": (8, 1, 2, 3, 4, 5, 6, 7),
        "spellcast": (0, 1, 2, 3, 4, 5, 4, 6),
        "slash": (0, 1, 2, 3, 4, 5, 4, 0),
    }
    offsets = {"left": 1, "front": 2, "right": 3}  # sheet rows face back, left, front, right
    with h5py.File(dataset, "r") as f:
        clips = f["train"]["frames"][np.flatnonzero(f["train"]["sequence_id"][:] == PLATE)]
    for label, action_class in enumerate(ACTION_CLASSES):
        action, direction = action_class.split("_")
        for frame, column in enumerate(columns[action]):
            expected = _reference_frame(lpc_sprites, PLATE, rows[action] + offsets[direction], column)
            np.testing.assert_array_equal(clips[label, frame], expected, err_msg=f"{action_class} {frame}")


def test_tie_is_composited_on_the_shirt(dataset: Path, lpc_sprites: Path):
    with h5py.File(dataset, "r") as f:
        index = int(np.flatnonzero(f["train"]["sequence_id"][:] == FORMAL)[0])  # walk_front
        stored = f["train"]["frames"][index, 0]
    without_tie = _reference_frame(lpc_sprites, FORMAL, 10, 8, tie=False)
    assert (stored != without_tie).any(axis=-1).sum() > 5


def test_render_clip_matches_the_build(dataset: Path, lpc_sprites: Path):
    variants = decode_character(FORMAL)
    files = {name: ATTRIBUTES[name][variants[name]].files for name in ATTRIBUTES} | {"shoes": SHOES.files}
    layers = {name: load_layer(sheets_dir=lpc_sprites, files=files[name]) for name in LAYER_ORDER}
    clip = render_clip(layers, action=2, direction=1)  # slash_left
    with h5py.File(dataset, "r") as f:
        index = int(
            np.flatnonzero(f["train"]["sequence_id"][:] == FORMAL)[ACTION_CLASSES.index("slash_left")]
        )
        np.testing.assert_array_equal(clip, f["train"]["frames"][index])


def test_missing_sheet_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="download") as err:
        build_sprites(sheets_dir=tmp_path, output=tmp_path / "out.h5", train_characters=1, test_characters=1)
    assert str(tmp_path / ATTRIBUTES["skin"][0].files[0]) in str(err.value)
    assert not (tmp_path / "out.h5").exists()


def test_subset_larger_than_the_split_is_refused(lpc_sprites: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="test_characters"):
        call_with_config(
            build_sprites,
            WORKFLOW_CONFIG,
            sheets_dir=lpc_sprites,
            output=tmp_path / "out.h5",
            test_characters=297,
        )
