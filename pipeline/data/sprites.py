"""Build the "Sprites" dataset of DSVAE (Li & Mandt, 2018) and S3VAE (Zhu et al., 2020) from the LPC sheets.

The recipe (shared/data/lpc-sprites/SOURCE.md): a character is one of 6 variants each of skin, pants,
top and hair (6^4 = 1296 characters), painted on opaque black as body, pants, top, hair, then the same
shoes for everyone. Each character is rendered in 3 actions (walk, spellcast, slash) x 3 directions
(front, left, right) = 9 clips of 8 frames of 64 x 64 RGB. The characters are shuffled with NumPy seed 423;
the first 1000 are for training, the other 296 for testing.

Character ids follow the recipe's enumeration, nested loops over skin, pants, top, hair:
`id = ((skin * 6 + pants) * 6 + top) * 6 + hair`, so `encode_character` and `decode_character` are
mixed-radix conversions.

Compositing reproduces PIL's `Image.alpha_composite`, which the recipe used, bit for bit: over an opaque
canvas its integer arithmetic reduces to `out = div255(src * a + dst * (255 - a))`, rounded, as `_over`
computes it on whole stacks of frames at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.config import FromConfig
from pipeline.data.download import refetch_hint, verify_files
from pipeline.data.factors import Factor
from pipeline.data.h5io import GENERATION_DIRECTIONS, Protocol, write_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str  # class name stored in the dataset
    files: tuple[str, ...]  # sheets (paths under the sheets folder) composited bottom to top into one layer


def _variant(name: str, *files: str) -> Variant:
    return Variant(name, files)


# Attribute -> its variants, in the recipe's index order (SOURCE.md gives the provenance of each index).
ATTRIBUTES: dict[str, tuple[Variant, ...]] = {
    "skin": (
        _variant("light", "body/male/light.png"),
        _variant("tanned2", "body/male/tanned2.png"),
        _variant("darkelf", "body/male/darkelf.png"),
        _variant("darkelf2", "body/male/darkelf2.png"),
        _variant("dark", "body/male/dark.png"),
        _variant("dark2", "body/male/dark2.png"),
    ),
    "pants": (
        _variant("white_pants", "legs/pants/male/white_pants_male.png"),
        _variant("golden_greaves", "legs/armor/male/golden_greaves_male.png"),
        _variant("red_pants", "legs/pants/male/red_pants_male.png"),
        _variant("metal_pants", "legs/armor/male/metal_pants_male.png"),
        _variant("teal_pants", "legs/pants/male/teal_pants_male.png"),
        _variant("formal_pants", "formal_male_no_th-sh/pants.png"),
    ),
    "top": (
        _variant("maroon_longsleeve", "torso/shirts/longsleeve/male/maroon_longsleeve.png"),
        _variant("teal_longsleeve", "torso/shirts/longsleeve/male/teal_longsleeve.png"),
        _variant("white_longsleeve", "torso/shirts/longsleeve/male/white_longsleeve.png"),
        _variant("plate_chest", "torso/plate/chest_male.png"),
        _variant("leather_chest", "torso/leather/chest_male.png"),
        # The recipe's topwear/5.png is this shirt with the tie composited on top (SOURCE.md).
        _variant("formal_shirt_tie", "formal_male_no_th-sh/shirt.png", "formal_male_no_th-sh/tie.png"),
    ),
    "hair": (
        _variant("messy2_green2", "hair/male/messy2/green2.png"),
        _variant("longknot_blue2", "hair/male/longknot/blue2.png"),
        _variant("messy1_light-blonde", "hair/male/messy1/light-blonde.png"),
        _variant("bangs_white", "hair/male/bangs/white.png"),
        _variant("plain_ruby-red", "hair/male/plain/ruby-red.png"),
        _variant("jewfro_purple", "hair/male/jewfro/purple.png"),
    ),
}
SHOES = _variant("golden_boots", "feet/armor/male/golden_boots_male.png")
LAYER_ORDER = ("skin", "pants", "top", "hair", "shoes")  # paint order, bottom first

N_VARIANTS = 6
N_CHARACTERS = N_VARIANTS ** len(ATTRIBUTES)
N_TRAIN = 1000
N_FRAMES = 8
CELL = 64  # pixels per sheet cell, both ways
SHEET_CELLS = (21, 13)  # rows, columns of every sheet

ACTIONS = ("walk", "spellcast", "slash")
DIRECTIONS = ("front", "left", "right")
# Action class label = 3 * action + direction, the recipe's order.
ACTION_CLASSES = tuple(f"{action}_{direction}" for action in ACTIONS for direction in DIRECTIONS)
# S3VAE Table 1 scores Sprites in both directions, its IS on the action
PROTOCOL = Protocol(GENERATION_DIRECTIONS, score_head="action", title="Sprites")
# Sheet rows come in groups of four per animation, facing back, left, front, right.
DIRECTION_ROW_OFFSET = {"back": 0, "left": 1, "front": 2, "right": 3}
ACTION_ROW_BASE = {"spellcast": 0, "walk": 8, "slash": 12}
# Sheet column shown at each of the 8 frames. Walk drops the standing pose (column 0) and starts on its
# last step; spellcast and slash have fewer than 8 frames, so the recipe repeats some.
ACTION_COLUMNS = {
    "walk": (8, 1, 2, 3, 4, 5, 6, 7),
    "spellcast": (0, 1, 2, 3, 4, 5, 4, 6),
    "slash": (0, 1, 2, 3, 4, 5, 4, 0),
}
# Sheet cell of each (action class, frame), as index arrays: rows (9, 1), columns (9, 8).
_CELL_ROWS = np.array(
    [[ACTION_ROW_BASE[a] + DIRECTION_ROW_OFFSET[d]] for a in ACTIONS for d in DIRECTIONS], dtype=np.intp
)
_CELL_COLUMNS = np.array([ACTION_COLUMNS[a] for a in ACTIONS for _ in DIRECTIONS], dtype=np.intp)


def encode_character(*, skin: int, pants: int, top: int, hair: int) -> int:
    """Character id of a combination of variant indices (see the module docstring)."""
    return int(np.ravel_multi_index((skin, pants, top, hair), (N_VARIANTS,) * len(ATTRIBUTES)))


def decode_character(character: int) -> dict[str, int]:
    """Variant index of each attribute of a character id; the inverse of `encode_character`."""
    indices = np.unravel_index(character, (N_VARIANTS,) * len(ATTRIBUTES))
    return {name: int(index) for name, index in zip(ATTRIBUTES, indices, strict=True)}


def character_split(seed: int = 423) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's split of all 1296 character ids: (first 1000 for training, remaining 296 for testing)."""
    characters = np.arange(N_CHARACTERS)
    # The same stream as the recipe's `np.random.seed(seed)` then a shuffle, without touching NumPy's
    # global random state.
    np.random.RandomState(seed).shuffle(characters)
    return characters[:N_TRAIN], characters[N_TRAIN:]


def _sheet_path(sheets_dir: Path, file: str) -> Path:
    path = sheets_dir / file
    if not path.is_file():
        raise FileNotFoundError(
            f"sprite sheet {path} is missing: run the download rule "
            f"(python -m pipeline.data.download --source lpc-sprites --dest {sheets_dir}), "
            "or set `mirror` in the config to a folder holding lpc-sprites/"
        )
    return path


def load_layer(*, sheets_dir: Path | str, files: tuple[str, ...]) -> np.ndarray:
    """RGBA cells (9 action classes, 8 frames, 64, 64, 4) uint8 of the sheets `files` composited in order."""
    sheets_dir = Path(sheets_dir)
    layer = None
    for file in files:
        path = _sheet_path(sheets_dir, file)
        try:
            with Image.open(path) as image:
                # Sheets are palette images with transparency; compositing needs real alpha.
                sheet = image.convert("RGBA")
        except (OSError, SyntaxError) as err:  # PIL's errors for a broken PNG
            raise ValueError(
                f"sprite sheet {path} cannot be read ({err}): {refetch_hint(sheets_dir)}"
            ) from err
        expected = (SHEET_CELLS[1] * CELL, SHEET_CELLS[0] * CELL)
        if sheet.size != expected:
            raise ValueError(f"{path} is {sheet.size} pixels, expected {expected}: re-download it")
        layer = sheet if layer is None else Image.alpha_composite(layer, sheet)
    cells = np.asarray(layer).reshape(SHEET_CELLS[0], CELL, SHEET_CELLS[1], CELL, 4)
    # Both index arrays broadcast to (9, 8) and lead the result, followed by (y, x, channel).
    return np.ascontiguousarray(cells[_CELL_ROWS, :, _CELL_COLUMNS])


@dataclass(frozen=True)
class _Paint:
    """A layer ready for `_over`: premultiplied colour plus the rounding offset, and 255 - alpha."""

    colour: np.ndarray  # (..., 3) uint16: rgb * alpha + 128
    transparency: np.ndarray  # (..., 1) uint16: 255 - alpha


def _paint(layer: np.ndarray) -> _Paint:
    rgb = layer[..., :3].astype(np.uint16)
    alpha = layer[..., 3:].astype(np.uint16)
    return _Paint(colour=rgb * alpha + 128, transparency=255 - alpha)


def _over(canvas: np.ndarray, paint: _Paint) -> np.ndarray:
    """Paint a layer over an opaque uint8 RGB canvas, rounding exactly as PIL's `alpha_composite`."""
    # Every intermediate stays below 2^16: at most 255 * 255 + 128 + 254.
    mixed = np.multiply(canvas, paint.transparency, dtype=np.uint16)
    mixed += paint.colour
    mixed += mixed >> 8
    mixed >>= 8
    return mixed.astype(np.uint8)


def render_clip(layers: Mapping[str, np.ndarray], *, action: int, direction: int) -> np.ndarray:
    """One clip (8, 64, 64, 3) uint8: `layers[name]` from `load_layer` for each name in `LAYER_ORDER`."""
    label = len(DIRECTIONS) * action + direction
    canvas = np.zeros((N_FRAMES, CELL, CELL, 3), dtype=np.uint8)
    for name in LAYER_ORDER:
        canvas = _over(canvas, _paint(layers[name][label]))
    return canvas


def _render_characters(
    paints: Mapping[str, list[_Paint]], shoes: _Paint, characters: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (character, its 9 clips (9, 8, 64, 64, 3)) in increasing id order.

    Consecutive ids share their lower layers (216 characters have the same skin, 36 the same skin and
    pants, ...), so the partial composites are kept and reused: 2850 layer paintings instead of 6480.
    """
    names = list(ATTRIBUTES)
    black = np.zeros((len(ACTION_CLASSES), N_FRAMES, CELL, CELL, 3), dtype=np.uint8)
    partial: list[tuple[int, np.ndarray]] = []  # (variant, canvas) after skin, pants, top of the last one
    for character in np.sort(characters):
        variants = decode_character(character)
        shared = 0
        while shared < len(partial) and partial[shared][0] == variants[names[shared]]:
            shared += 1
        del partial[shared:]
        for name in names[shared:-1]:
            canvas = partial[-1][1] if partial else black
            partial.append((variants[name], _over(canvas, paints[name][variants[name]])))
        hair = paints[names[-1]][variants[names[-1]]]
        yield int(character), _over(_over(partial[-1][1], hair), shoes)


def load_paints(sheets_dir: Path):
    """Every attribute variant's layer and the shoes, read from the sheets and painted for compositing.

    The sheets were verified when fetched; they are checked again before reading, as they may have changed.
    """
    sheets = [file for variants in ATTRIBUTES.values() for v in variants for file in v.files] + list(
        SHOES.files
    )
    for file in sheets:
        _sheet_path(sheets_dir, file)
    verify_files(sheets_dir / "SHA256SUMS", sheets)
    paints = {
        name: [_paint(load_layer(sheets_dir=sheets_dir, files=v.files)) for v in variants]
        for name, variants in ATTRIBUTES.items()
    }
    return paints, _paint(load_layer(sheets_dir=sheets_dir, files=SHOES.files))


FACTORS = [Factor("action", "dynamic", ACTION_CLASSES)] + [
    Factor(name, "static", tuple(v.name for v in variants)) for name, variants in ATTRIBUTES.items()
]


def split_arrays(ids: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of one split: its characters' clips (9 actions each, in label order) and their labels."""
    n_classes = len(ACTION_CLASSES)
    variants = np.unravel_index(ids, (N_VARIANTS,) * len(ATTRIBUTES))
    return {
        "frames": frames,
        "sequence_id": np.repeat(ids, n_classes),
        "action": np.tile(np.arange(n_classes), len(ids)),
        **{name: np.repeat(index, n_classes) for name, index in zip(ATTRIBUTES, variants, strict=True)},
    }


def build_sprites(
    *,
    sheets_dir: Path | str,
    output: Path | str,
    seed: int = 423,
    train_characters: int = FromConfig("sprites.train_characters"),
    test_characters: int = FromConfig("sprites.test_characters"),
    compression_level: int = 4,
) -> None:
    """Render the Sprites dataset from the LPC sheets in `sheets_dir` and write it to `output` (HDF5).

    The split is always drawn over all 1296 characters; `train_characters` / `test_characters` keep the
    first n of each side (small presets). Each split holds its characters in split order, each with its
    9 action classes in label order; `sequence_id` is the character id.
    """
    start = time.perf_counter()
    sheets_dir = Path(sheets_dir)
    train, test = character_split(seed=seed)
    for name, count, available in (("train", train_characters, train), ("test", test_characters, test)):
        if not 1 <= count <= len(available):
            raise ValueError(f"{name}_characters={count}: must be between 1 and {len(available)}")
    kept = {"train": train[:train_characters], "test": test[:test_characters]}
    paints, shoes = load_paints(sheets_dir)

    n_classes = len(ACTION_CLASSES)
    frames = {
        split: np.empty((len(ids) * n_classes, N_FRAMES, CELL, CELL, 3), dtype=np.uint8)
        for split, ids in kept.items()
    }
    place = {int(c): (split, row) for split, ids in kept.items() for row, c in enumerate(ids)}
    everyone = np.concatenate(list(kept.values()))
    for character, clips in tqdm(
        _render_characters(paints, shoes, everyone), total=len(everyone), desc="sprites", unit="character"
    ):
        split, row = place[character]
        frames[split][row * n_classes : (row + 1) * n_classes] = clips

    splits = {split: split_arrays(ids, frames[split]) for split, ids in kept.items()}
    logger.info(
        "rendered %s sequences in %.1f s",
        {s: len(a["frames"]) for s, a in splits.items()},
        time.perf_counter() - start,
    )
    write_dataset(
        output,
        name="sprites",
        factors=FACTORS,
        splits=splits,
        protocol=PROTOCOL,
        compression_level=compression_level,
    )
    logger.info("wrote %s in %.1f s", output, time.perf_counter() - start)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(build_sprites)
