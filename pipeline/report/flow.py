"""Stage `plot_flow_directions`: the authors' flow-direction labels (pipeline/labels/flow.py) on a pair of
test clips that are each other's mirror image: a character's left-facing and right-facing clip of one action
(Sprites' `walk_left` and `walk_right`), the first such pair of the test split.

Each row is one clip's frames with the 3 x 3 grid of the labels: an arrow in every moving cell points in its
direction bin, still cells are left empty, and frame 1 (no flow enters it) has none. The title gives the
share of (cell, frame) entries where the right-facing clip's label is the mirror image of the left-facing
clip's (column swapped, bin b -> (4 - b) mod 8), and the same share for another character's right-facing
clip, so the figure says how far the labels name the facing direction.
"""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.data import h5io  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402
from pipeline.labels.flow import DIRECTION_BINS, cell_edges, mirror_agreement  # noqa: E402

PAIR = ("walk_left", "walk_right")  # the dynamic classes of a clip and its mirror image


def mirrored_pair(split: h5io.Split, classes: tuple[str, ...]) -> tuple[int, int, int]:
    """Rows of the first character's PAIR clips in the split and of another character's second clip."""
    names = {name: classes.index(name) for name in PAIR}
    actions, ids = split.factors["action"], split.sequence_id
    for i in np.flatnonzero(actions == names[PAIR[0]]):
        twins = np.flatnonzero((actions == names[PAIR[1]]) & (ids == ids[i]))
        others = np.flatnonzero((actions == names[PAIR[1]]) & (ids != ids[i]))
        if len(twins) and len(others):
            return int(i), int(twins[0]), int(others[0])
    raise ValueError(f"the test split has no character with both {PAIR} clips")


def _draw(ax, frame: np.ndarray, labels: np.ndarray, grid: int) -> None:
    h, w = frame.shape[:2]
    ax.imshow(frame, interpolation="nearest")
    rows, cols = cell_edges(h, grid), cell_edges(w, grid)
    for edge in rows[1:-1]:
        ax.axhline(edge - 0.5, color="0.5", lw=0.5)
    for edge in cols[1:-1]:
        ax.axvline(edge - 0.5, color="0.5", lw=0.5)
    for cell, label in enumerate(labels):
        if label < 0:
            continue
        r, c = divmod(cell, grid)
        y, x = (rows[r] + rows[r + 1]) / 2, (cols[c] + cols[c + 1]) / 2
        angle = 2 * math.pi * label / DIRECTION_BINS  # bin 0 points right; y grows downwards in the image
        colour = plt.cm.hsv(label / DIRECTION_BINS)
        ax.annotate(
            "",
            xy=(x + 8 * math.cos(angle), y + 8 * math.sin(angle)),
            xytext=(x, y),
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.5},
        )
    ax.set_axis_off()


def plot_flow_directions(
    *, dataset: str | os.PathLike, labels: str | os.PathLike, output: str | os.PathLike
) -> None:
    """Draw the direction labels of a test clip and of its mirror image (module doc)."""
    split = h5io.read_split(dataset, "test")
    classes = next(f.classes for f in h5io.read_factors(dataset) if f.name == "action")
    directions = h5io.read_labels(labels, "test")["flow_direction"]  # (N, T, cells)
    grid = int(h5io.read_attrs(labels)["direction_grid"])
    left, right, other = mirrored_pair(split, classes)
    same = mirror_agreement(directions[left], directions[right], grid)
    different = mirror_agreement(directions[left], directions[other], grid)
    T = directions.shape[1]
    fig, axes = plt.subplots(2, T, figsize=(1.6 * T, 4.0), dpi=120)
    for row, (clip, name) in enumerate(((left, PAIR[0]), (right, PAIR[1]))):
        for t in range(T):
            _draw(axes[row, t], split.frames[clip, t], directions[clip, t], grid)
        axes[row, 0].set_title(f"{name}, character {split.sequence_id[clip]}", fontsize=8, loc="left")
    fig.suptitle(
        f"flow-direction labels: {PAIR[1]} is the mirror image of {PAIR[0]} in {100 * same:.0f}% of the "
        f"(cell, frame) labels ({100 * different:.0f}% for another character's {PAIR[1]})",
        fontsize=9,
    )
    fig.tight_layout(h_pad=1.5)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(plot_flow_directions)
