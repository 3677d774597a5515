"""GRID talking faces (Cooke, Barker, Cunningham & Shao 2006, CC BY 4.0): 64 x 64 face crops, clips of 15
frames, the speaker's identity as the static factor.

It is the real-face dataset every face test, CI and smoke run uses: the shared mirror holds 11 sample clips
of the corpus (source `grid-samples`, 10 people; shared/data/grid-samples/SOURCE.md). A user with the full
corpus points `grid.root` at it in the corpus's layout, one folder per speaker (`s1/bbaf2n.mpg`, ...; any
depth below the speaker folder).

Each video is split in time: its first `1 - test_fraction` of frames give the training clips, the rest the
test clips, so that both splits hold every speaker (the identity judge needs them) and no test frame is
seen in training. Clips start every `hop` frames within each part.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import FromConfig
from pipeline.data.download import verify_files
from pipeline.data.faces import Box, FaceDetector, clip_starts, crop, read_video
from pipeline.data.factors import Factor
from pipeline.data.h5io import write_dataset

logger = logging.getLogger(__name__)

# Who speaks in each sample clip of the mirror, judged by eye (SOURCE.md): one man says both
# id2_vcd_swwp2s and pwij3p; the other nine clips show nine other people.
SAMPLE_SPEAKERS = {"id2_vcd_swwp2s": "speaker_a", "pwij3p": "speaker_a"}


def find_videos(root: Path, samples: bool) -> dict[str, str]:
    """Video path -> speaker. The samples: one flat folder, speakers from SAMPLE_SPEAKERS (else the clip's
    own name); the corpus: the speaker is the first folder below `root`."""
    videos = sorted(root.glob("*.mpg") if samples else root.glob("*/**/*.mpg"))
    if not videos:
        layout = "its .mpg files" if samples else "one folder per speaker (s1/bbaf2n.mpg, ...)"
        raise FileNotFoundError(f"{root} holds no GRID video: point grid.root at a copy with {layout}")
    if samples:
        return {str(v): SAMPLE_SPEAKERS.get(v.stem, v.stem) for v in videos}
    return {str(v): v.relative_to(root).parts[0] for v in videos}


def face_clips(
    frames: np.ndarray, box: Box, *, clip_frames: int, hop: int, image_size: int, test_fraction: float
) -> dict[str, np.ndarray]:
    """The train and test clips of one video, (N, T, S, S, 3) each, from its two parts in time."""
    faces = crop(frames, box, image_size)
    cut = int(round(len(faces) * (1 - test_fraction)))
    parts = {"train": faces[:cut], "test": faces[cut:]}
    return {
        split: np.stack([part[s : s + clip_frames] for s in clip_starts(len(part), clip_frames, hop)])
        if len(part) >= clip_frames
        else np.empty((0, clip_frames, image_size, image_size, 3), np.uint8)
        for split, part in parts.items()
    }


def build_grid(
    *,
    output: str | Path,
    videos_dir: str | Path | None = None,
    root: str | Path | None = FromConfig("grid.root"),
    clip_frames: int = FromConfig("grid.frames"),
    hop: int = FromConfig("grid.hop"),
    image_size: int = FromConfig("grid.image_size"),
    test_fraction: float = FromConfig("grid.test_fraction"),
    margin: float = FromConfig("faces.margin"),
) -> None:
    """Write the GRID dataset: the corpus at `root` when set, else the verified samples in `videos_dir`."""
    if root is None and videos_dir is None:
        raise ValueError("build_grid needs the corpus (grid.root) or the downloaded samples (videos_dir)")
    samples = root is None
    folder = Path(videos_dir if samples else root)
    if samples:
        verify_files(folder / "SHA256SUMS")
    speakers = find_videos(folder, samples)
    classes = tuple(sorted(set(speakers.values())))
    detector = FaceDetector()
    arrays: dict[str, dict[str, list]] = {
        s: {"frames": [], "identity": [], "sequence_id": []} for s in ("train", "test")
    }
    for index, (path, speaker) in enumerate(tqdm(speakers.items(), desc="grid", unit="video")):
        frames = read_video(path)
        box = detector.box(frames, margin=margin, source=path)
        clips = face_clips(
            frames, box, clip_frames=clip_frames, hop=hop, image_size=image_size, test_fraction=test_fraction
        )
        for split, split_clips in clips.items():
            arrays[split]["frames"].append(split_clips)
            arrays[split]["identity"] += [classes.index(speaker)] * len(split_clips)
            arrays[split]["sequence_id"] += [index] * len(split_clips)
    splits = {
        split: {
            "frames": np.concatenate(a["frames"]),
            "identity": np.asarray(a["identity"], np.int16),
            "sequence_id": np.asarray(a["sequence_id"], np.int32),
        }
        for split, a in arrays.items()
    }
    for split, a in splits.items():
        if not len(a["frames"]):
            raise ValueError(
                f"grid: no {split} clip of {clip_frames} frames: the videos are too short for grid.frames "
                f"and grid.test_fraction ({test_fraction})"
            )
    logger.info(
        "grid: %s clips of %d speakers", {s: len(a["frames"]) for s, a in splits.items()}, len(classes)
    )
    write_dataset(output, name="grid", factors=[Factor("identity", "static", classes)], splits=splits)
