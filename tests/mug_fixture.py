"""A small copy of the MUG Facial Expression Database in its exact on-disk layout, cut from real GRID faces.

MUG is licensed, so no test can hold it. The copy has the database's layout (pipeline/data/mug.py:
`<subject>/<expression>/<take>/img_0000.jpg`), and its frames are real faces, so that face detection,
cropping and everything after it run as on the database: each subject is one GRID speaker of the mirror
(shared/data/grid-samples, 10 people), each take a window of 20-30 frames of that speaker's video, taken
at a different time so that the clips differ. Every subject has the six expressions and a `neutral`
folder (which the builder must leave out); some expressions have a second take, and one take is too short
for a clip (which the builder skips).
"""

from __future__ import annotations

from pathlib import Path

import cv2

from pipeline.data.faces import read_video
from pipeline.data.mug import EXPRESSIONS

# One clip per person: id2_vcd_swwp2s and pwij3p show the same man (grid-samples/SOURCE.md).
SPEAKERS = ("bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "lrwp9a", "lwbsza", "sbia1a", "sbwe5n", "swiz3n")
FOLDERS = (*EXPRESSIONS, "neutral")  # as the database: the six expressions and neutral


def takes_of(subject: int, expression: int) -> int:
    """1 or 2 takes: a second one for a third of the (subject, expression) cells."""
    return 2 if (subject + expression) % 3 == 0 else 1


def window(subject: int, expression: int, take: int, n_frames: int) -> tuple[int, int]:
    """First frame and length (20-30) of a take's window of the speaker's video."""
    length = 20 + (3 * expression + 5 * take + subject) % 11
    start = (7 * expression + 23 * take + 3 * subject) % (n_frames - length + 1)
    return start, length


def write_take(folder: Path, frames) -> None:
    """A take as the database stores it: img_0000.jpg, img_0001.jpg, ... (RGB frames in, JPEG files out)."""
    folder.mkdir(parents=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img_{index:04d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


SHORT_TAKE = Path("001", "happiness", "take009")  # 10 frames: shorter than a clip, which the builder skips


def write_mug_copy(root: Path, grid_samples: Path, subjects: int = 5) -> Path:
    """Write the copy under `root` (subjects 001, 002, ...), one GRID speaker each, and one take too short
    for a clip (SHORT_TAKE); returns `root`."""
    if subjects > len(SPEAKERS):
        raise ValueError(f"the GRID samples show {len(SPEAKERS)} people; asked for {subjects} subjects")
    for s, speaker in enumerate(SPEAKERS[:subjects]):
        video = read_video(grid_samples / f"{speaker}.mpg")  # 75 frames
        for e, expression in enumerate(FOLDERS):
            for t in range(takes_of(s, e)):
                start, length = window(s, e, t, len(video))
                write_take(root / f"{s + 1:03d}" / expression / f"take{t:03d}", video[start : start + length])
        if s == 0:
            write_take(root / SHORT_TAKE, video[40:50])
    return root


def expected_takes(subjects: int = 5) -> int:
    """How many takes of the six expressions (not neutral) long enough for a clip the copy holds."""
    return sum(takes_of(s, e) for s in range(subjects) for e in range(len(EXPRESSIONS)))
