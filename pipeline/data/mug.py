"""Stage `build_mug`: the MUG Facial Expression Database (Aifanti, Papachristou & Delopoulos 2010) as S3VAE
section 5.1 uses it: 64 x 64 face crops, one clip of 15 frames sampled at random from each video, 75% of the
clips for training and the rest for testing.

MUG is licensed and never downloaded: request it from its site (MUG_SITE) and set `mug.root` to the folder
that holds its subject folders (`subjects3/` of the database), in the database's own layout:

    root/<subject>/<expression>/<take>/img_0000.jpg ...     e.g. 001/happiness/take000/img_0000.jpg

one folder per subject (52 in the database), one per expression (anger, disgust, fear, happiness, neutral,
sadness, surprise), one per take (a video), a video's frames as JPEG files in name order. The six expressions
of the paper are kept; `neutral` and any other folder are left out (logged).

Each video gets one face box (pipeline/data/faces.py: the median detection of every fifth frame of the whole
video), and its clip is one window of `clip_frames` frames at a start drawn from the seed and the video's
path, so that a clip does not change when other videos are added. Videos shorter than a clip are skipped
(logged). Factors: `expression` (dynamic, 6 classes) and `identity` (static, one class per subject that
gives a clip); `sequence_id` indexes the root attribute `videos` (each clip's subject/expression/take).
The split is stratified (`split_clips`): both splits hold every subject and every expression wherever a
subject or an expression has two clips or more.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import FromConfig
from pipeline.data.faces import FaceDetector, crop, read_image_sequence
from pipeline.data.factors import Factor
from pipeline.data.h5io import Protocol, write_dataset

logger = logging.getLogger(__name__)

MUG_SITE = "https://mug.ee.auth.gr/fed/"
# S3VAE section 5.1's six expressions, in its order; the database also has `neutral`, which it leaves out
EXPRESSIONS = ("anger", "fear", "disgust", "happiness", "sadness", "surprise")
DATABASE_EXPRESSIONS = (*EXPRESSIONS, "neutral")  # the expression folders the database holds
IMAGE_SUFFIXES = (".jpg", ".jpeg")
LAYOUT = "<root>/<subject, e.g. 001>/<expression, e.g. happiness>/<take, e.g. take000>/img_0000.jpg ..."
# S3VAE scores MUG by the expression of clips generated with z_1:T kept and z_f drawn (section 5.1.3)
PROTOCOL = Protocol(directions=("fixed_dynamics",), score_head="expression", title="MUG")
DETECT_EVERY = 5  # the face box is the median detection of every DETECT_EVERY-th frame of a video


@dataclass(frozen=True)
class Take:
    """One video of the database: its subject, expression and frame files in order."""

    subject: str
    expression: str
    frames: tuple[Path, ...]

    @property
    def name(self) -> str:
        return "/".join(self.frames[0].parts[-4:-1])  # subject/expression/take


def _layout_error(what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what}. mug.root must be the folder of the MUG database's subject folders, in its own layout "
        f"{LAYOUT} (one folder per expression: {', '.join(DATABASE_EXPRESSIONS)}): point mug.root at that "
        "folder (subjects3/ of the database), e.g. --config mug='{root: /data/MUG/subjects3}', or copy the "
        "database again"
    )


def check_root(root: str | os.PathLike | None) -> Path:
    """`root` as a folder, or an error saying that MUG is licensed, where to get it and what to set."""
    if root is None:
        raise ValueError(
            "mug.root is null: MUG (the MUG Facial Expression Database) is licensed and never downloaded. "
            f"Request it from its site, {MUG_SITE}, then set mug.root to the folder holding its subject "
            "folders (001/, 002/, ...; subjects3/ of the database), e.g. --config mug='{root: "
            "/data/MUG/subjects3}' or `mug: {root: ...}` in a --configfile"
        )
    root = Path(root)
    if not root.is_dir():
        raise _layout_error(f"mug.root {root} is not a folder")
    return root


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _frames(take: Path) -> tuple[Path, ...]:
    frames = tuple(sorted(p for p in take.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    if not frames:
        raise _layout_error(f"{take} (a take) holds no .jpg frame")
    return frames


def find_takes(root: str | os.PathLike | None) -> list[Take]:
    """Every take of the six expressions under `root`, sorted by subject, expression folder and take."""
    root = check_root(root)
    subjects = _dirs(root)
    if not subjects:
        raise _layout_error(f"mug.root {root} holds no subject folder")
    takes, skipped = [], set()
    for subject in subjects:
        expressions = [p for p in _dirs(subject) if p.name in DATABASE_EXPRESSIONS]
        if not expressions:
            raise _layout_error(
                f"{subject} (the first subject folder without one) holds no expression folder "
                f"(found: {[p.name for p in _dirs(subject)] or 'none'})"
            )
        skipped |= {p.name for p in _dirs(subject) if p.name not in EXPRESSIONS}
        for expression in (p for p in expressions if p.name in EXPRESSIONS):
            folders = _dirs(expression)
            if not folders:
                raise _layout_error(f"{expression} holds no take folder")
            takes += [Take(subject.name, expression.name, _frames(take)) for take in folders]
    if skipped:
        logger.info("mug: left out the folders %s (not one of the six expressions)", sorted(skipped))
    return takes


def split_clips(
    subjects: np.ndarray, expressions: np.ndarray, train_fraction: float, seed: int
) -> np.ndarray:
    """Whether each clip is a test clip: round((1 - train_fraction) * N) of them, drawn so that the test
    split holds every subject and every expression first, then about `1 - train_fraction` of each
    (subject, expression) cell; a clip never goes to test when it is the last of its subject or its
    expression left in train."""
    n = len(subjects)
    rng = np.random.default_rng(seed)
    n_test = min(max(int(round((1 - train_fraction) * n)), 1), n - 1)
    cells = subjects.astype(np.int64) * (expressions.max() + 1) + expressions
    rank = np.empty(n)
    for cell in np.unique(cells):
        members = np.flatnonzero(cells == cell)
        rank[rng.permutation(members)] = (np.arange(len(members)) + rng.random()) / len(members)
    test = np.zeros(n, bool)
    left = {"s": np.bincount(subjects), "e": np.bincount(expressions)}  # clips of each still in train

    def move(i: int) -> None:
        test[i] = True
        left["s"][subjects[i]] -= 1
        left["e"][expressions[i]] -= 1

    def movable(i: int) -> bool:  # not yet in test, and not the last of its subject or expression in train
        room = test.sum() < n_test and not test[i]
        return room and left["s"][subjects[i]] > 1 and left["e"][expressions[i]] > 1

    order = np.argsort(rank, kind="stable")
    for i in order:  # cover every subject and expression in test first
        new = not test[subjects == subjects[i]].any() or not test[expressions == expressions[i]].any()
        if new and movable(i):
            move(i)
    for i in order:  # then fill, lowest rank in its cell first
        if movable(i):
            move(i)
    return test


def clip_start(take: Take, clip_frames: int, seed: int) -> int:
    """The first frame of the take's clip, drawn from the seed and the take's own path."""
    rng = np.random.default_rng([seed, zlib.crc32(take.name.encode())])
    return int(rng.integers(0, len(take.frames) - clip_frames + 1))


def face_clip(
    take: Take, detector: FaceDetector, *, start: int, clip_frames: int, image_size: int, margin: float
) -> np.ndarray:
    """The take's clip of `clip_frames` frames from `start`, cropped to its video's face box: (T, S, S, 3)."""
    box = detector.box(
        read_image_sequence(take.frames[::DETECT_EVERY]), margin=margin, every=1, source=take.name
    )
    return crop(read_image_sequence(take.frames[start : start + clip_frames]), box, image_size)


def build_mug(
    *,
    output: str | os.PathLike,
    root: str | os.PathLike | None = FromConfig("mug.root"),
    clip_frames: int = FromConfig("mug.frames"),
    image_size: int = FromConfig("mug.image_size"),
    train_fraction: float = FromConfig("mug.train_fraction"),
    margin: float = FromConfig("faces.margin"),
    seed: int = FromConfig("seed"),
) -> None:
    """Write the MUG dataset from the database at `root`: one face-cropped clip per video, a stratified
    train / test split (module doc)."""
    takes = find_takes(root)
    short = [t for t in takes if len(t.frames) < clip_frames]
    for take in short:
        logger.info("mug: skipped %s: %d frames, shorter than a clip", take.name, len(take.frames))
    takes = [t for t in takes if len(t.frames) >= clip_frames]
    if len(takes) < 2:
        raise ValueError(
            f"{root}: {len(takes)} video(s) of at least mug.frames = {clip_frames} frames, and a train and "
            "a test clip need two: copy the whole database"
        )
    subjects = tuple(sorted({t.subject for t in takes}))
    identity = np.array([subjects.index(t.subject) for t in takes], np.int16)
    expression = np.array([EXPRESSIONS.index(t.expression) for t in takes], np.int16)
    detector = FaceDetector()
    sizes = {"clip_frames": clip_frames, "image_size": image_size, "margin": margin}
    frames = np.stack(
        [
            face_clip(t, detector, start=clip_start(t, clip_frames, seed), **sizes)
            for t in tqdm(takes, desc="mug", unit="video")
        ]
    )
    test = split_clips(identity, expression, train_fraction, seed)
    arrays = {"frames": frames, "identity": identity, "expression": expression}
    splits = {
        split: {**{k: v[rows] for k, v in arrays.items()}, "sequence_id": np.flatnonzero(rows)}
        for split, rows in (("train", ~test), ("test", test))
    }
    logger.info(
        "mug: %d videos (%d skipped as short) of %d subjects: %d train, %d test clips",
        len(takes), len(short), len(subjects), len(splits["train"]["frames"]), len(splits["test"]["frames"]),
    )  # fmt: skip
    write_dataset(
        output,
        name="mug",
        factors=[Factor("expression", "dynamic", EXPRESSIONS), Factor("identity", "static", subjects)],
        splits=splits,
        protocol=PROTOCOL,
        attrs={"videos": json.dumps([t.name for t in takes])},  # sequence_id indexes it
    )


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(build_mug)
