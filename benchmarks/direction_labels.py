"""How well the authors' flow-direction labels name Sprites' action, for each rule of what "moves".

    python benchmarks/direction_labels.py                       # results/data/sprites.h5, DIS flow
    python benchmarks/direction_labels.py --thresholds 0.1,0.2,0.5 --clips 3000

S3VAE's authors label each moving cell of a 3 x 3 grid with its flow direction in 8 bins; their code does
not say when a cell moves (pipeline/labels/flow.py). For each threshold on a cell's mean flow (pixels per
frame), on the dataset's clips: the share of cells that move; the mirror agreement, on pairs of a
character's left- and right-facing clips of the same action, of each (cell, frame) label with its mirror
image's (column swapped, bin b -> (4 - b) mod 8), against the same on pairs of different characters; and
the test accuracy of a linear probe (logistic regression) that reads the facing (front, left, right) and
the action (9 classes) from the labels alone, one-hot per cell and frame, and of one that reads the facing
from a single frame's labels (what a head on one z_t sees; frames 2 to T pooled). Prints a table; writes
nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data import h5io  # noqa: E402
from pipeline.data.sprites import ACTION_CLASSES, ACTIONS, DIRECTIONS  # noqa: E402
from pipeline.evaluate.diagnostics import probe_accuracy  # noqa: E402
from pipeline.labels.flow import DIRECTION_BINS, compute_flow, direction_cells, mirror_agreement  # noqa: E402


def facing_pairs(split: h5io.Split) -> tuple[np.ndarray, np.ndarray]:
    """Rows of each character's left-facing clip and of its right-facing clip of the same action."""
    actions = split.factors["action"]
    left, right = [], []
    for action in ACTIONS:
        l_class, r_class = ACTION_CLASSES.index(f"{action}_left"), ACTION_CLASSES.index(f"{action}_right")
        rights = {
            cid: i for i, (cid, a) in enumerate(zip(split.sequence_id, actions, strict=True)) if a == r_class
        }
        for i, (cid, a) in enumerate(zip(split.sequence_id, actions, strict=True)):
            if a == l_class and cid in rights:
                left.append(i)
                right.append(rights[cid])
    return np.array(left), np.array(right)


def one_hot(labels: np.ndarray) -> np.ndarray:
    """(N, T, cells) labels in -1..7 -> (N, T * cells * 9) features."""
    return np.eye(DIRECTION_BINS + 1, dtype=np.float32)[labels + 1].reshape(len(labels), -1)


def frame_probe(labels: dict[str, np.ndarray], facing: dict[str, np.ndarray]) -> float:
    """Facing from one frame's labels: every frame but the first is a sample, with its clip's facing."""
    x = {
        n: np.eye(DIRECTION_BINS + 1, dtype=np.float32)[v[:, 1:] + 1].reshape(-1, v.shape[-1] * 9)
        for n, v in labels.items()
    }
    y = {n: np.repeat(f, labels[n].shape[1] - 1) for n, f in facing.items()}
    return probe_accuracy(x["train"], y["train"], x["test"], y["test"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(ROOT / "results/data/sprites.h5"))
    parser.add_argument("--thresholds", default="0.05,0.1,0.2,0.3,0.5,1.0")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--clips", type=int, default=3000, help="training clips the probes are fitted on")
    args = parser.parse_args(argv)
    train, test = (
        h5io.read_split(args.dataset, s, limit=n) for s, n in (("train", args.clips), ("test", None))
    )
    flows = {
        name: compute_flow(split.frames, backend="dis") for name, split in (("train", train), ("test", test))
    }
    left, right = facing_pairs(test)
    others = np.roll(right, 1)  # another character's right-facing clip of the same action, mostly
    facing = {
        name: split.factors["action"] % len(DIRECTIONS) for name, split in (("train", train), ("test", test))
    }
    print(
        f"{len(test)} test clips, {len(left)} left/right pairs; probes fitted on {len(train)} training clips"
    )
    print(
        "threshold | moving | mirror agreement (same / other character) | facing | action | facing, one frame"
    )
    for threshold in map(float, args.thresholds.split(",")):
        labels = {
            n: direction_cells(f, grid=args.grid, moving_threshold=threshold)[0] for n, f in flows.items()
        }
        moving = float((labels["test"][:, 1:] >= 0).mean())
        same = mirror_agreement(labels["test"][left], labels["test"][right], args.grid)
        other = mirror_agreement(labels["test"][left], labels["test"][others], args.grid)
        x = {n: one_hot(v) for n, v in labels.items()}
        face = probe_accuracy(x["train"], facing["train"], x["test"], facing["test"])
        action = probe_accuracy(x["train"], train.factors["action"], x["test"], test.factors["action"])
        one = frame_probe(labels, facing)
        agree = f"{same:.3f} / {other:.3f}"
        print(f"{threshold:9.2f} | {moving:6.2f} | {agree} | {face:6.3f} | {action:6.3f} | {one:.3f}")


if __name__ == "__main__":
    main()
