"""Stage `plot_landmarks`: what the landmark labels (pipeline/labels/landmarks.py) see on one test clip.

Above, a few frames of the test clip whose distances vary most, with every landmark in grey and the ones
the distances read highlighted: each eyelid pair and the inner-lip pair in the colour of its curve, the
outer eye corners (the inter-ocular distance) in white. Below, the three distances over the whole clip;
frames without a face are left blank.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.data import h5io  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402
from pipeline.labels.landmarks import DISTANCE_NAMES, SCHEMES, Scheme  # noqa: E402

COLOURS = ("tab:blue", "tab:orange", "tab:green")  # right eye, left eye, lips


def most_moving_clip(distances: np.ndarray, found: np.ndarray) -> int:
    """The clip whose distances (N, T, 3) vary most over its frames with a face (found (N, T))."""
    masked = np.where(found[..., None].astype(bool), distances, np.nan)
    with np.errstate(invalid="ignore"):  # a clip with one found frame or none has no spread
        spread = np.nan_to_num(np.nanstd(masked, axis=1)).sum(axis=-1)  # (N,)
    return int(np.argmax(spread))


def _draw_frame(ax, frame: np.ndarray, points: np.ndarray, scheme: Scheme, found: bool, t: int) -> None:
    h, w = frame.shape[:2]
    ax.imshow(frame, extent=(0, w, h, 0), interpolation="nearest")  # points: the frame's top-left is (0, 0)
    if found:
        ax.scatter(*points.T, s=1, c="0.9", alpha=0.35, linewidths=0)
        for pairs, colour in zip(scheme.gaps, COLOURS, strict=True):
            for upper, lower in pairs:
                ax.plot(*points[[upper, lower]].T, color=colour, marker="o", ms=3.5, lw=1.2)
        ax.scatter(*points[list(scheme.corners)].T, s=18, c="white", edgecolors="black", linewidths=0.6)
    ax.set_title(f"frame {t}" + ("" if found else ": no face"), fontsize=8)
    ax.set_axis_off()


def plot_landmarks(
    *,
    dataset: str | os.PathLike,
    labels: str | os.PathLike,
    output: str | os.PathLike,
    frames_shown: int = 8,
) -> None:
    """Frames of one test clip with the landmarks the distances use, and its distance curves."""
    attrs = h5io.read_attrs(labels)
    scheme = SCHEMES[str(attrs["backend"])]
    test = h5io.read_labels(labels, "test")
    clip = most_moving_clip(test["distances"], test["face_found"])
    frames = h5io.read_split(dataset, "test", limit=clip + 1).frames[clip]  # (T, H, W, 3)
    points = test["landmarks"][clip].astype(np.float32)  # (T, P, 2)
    found = test["face_found"][clip].astype(bool)  # (T,)
    distances = np.where(found[:, None], test["distances"][clip], np.nan)  # (T, 3)
    shown = np.unique(np.linspace(0, len(frames) - 1, min(frames_shown, len(frames))).round().astype(int))

    fig = plt.figure(figsize=(1.9 * len(shown), 5.2), dpi=110)
    grid = fig.add_gridspec(2, len(shown), height_ratios=(1.9, 2.6))
    for column, t in enumerate(shown):
        _draw_frame(fig.add_subplot(grid[0, column]), frames[t], points[t], scheme, found[t], t)
    curves = fig.add_subplot(grid[1, :])
    for name, colour, values in zip(DISTANCE_NAMES, COLOURS, distances.T, strict=True):
        curves.plot(values, color=colour, marker=".", label=name.replace("_", " "))
    for t in shown:
        curves.axvline(t, color="0.8", lw=0.8, zorder=0)
    curves.set_xlim(-0.5, len(frames) - 0.5)
    curves.set_xlabel("frame")
    curves.set_ylabel("gap / inter-ocular distance")
    curves.legend(fontsize=8, ncol=3, loc="upper right")
    fig.suptitle(
        f"{attrs['dataset']}: landmarks ({attrs['backend']}) of test clip {clip}, the one whose distances "
        "vary most; white: eye corners",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(plot_landmarks)
