"""Stage `label_silence`: per-frame silence pseudo labels of audio segments (S3VAE section 4.2).

S3VAE's dynamic-factor prediction on speech predicts, for every frame, whether it is silent, decided by
a threshold on the frame's volume. The volume is the frame's RMS level in dB re full scale (the
`rms_db` trajectory that `build_audio` stores beside the features); frames below `threshold_db` are
silent (label 1).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from pipeline.config import FromConfig
from pipeline.data import h5io

logger = logging.getLogger(__name__)


def silence_labels(rms_db: np.ndarray, threshold_db: float) -> np.ndarray:
    """1 where a frame's level is below `threshold_db`, else 0; same shape as `rms_db`, uint8."""
    return (np.asarray(rms_db) < threshold_db).astype(np.uint8)


def label_silence(
    *,
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    threshold_db: float = FromConfig("audio.silence_db"),
) -> None:
    """Write `labels/{split}/silence` (N, T) uint8 for every split of the audio `dataset`."""
    attrs = h5io.read_attrs(dataset)
    if attrs.get("modality") != "audio":
        raise ValueError(f"{dataset} is not an audio dataset: silence labels need the rms_db of build_audio")
    labels = {}
    for split in h5io.model_splits(dataset):
        silent = silence_labels(h5io.read_split(dataset, split).trajectories["rms_db"], threshold_db)
        logger.info(
            "%s/%s: %.1f%% of %d frames silent", attrs["name"], split, 100 * silent.mean(), silent.size
        )
        labels[split] = {"silence": silent}
    h5io.write_labels(
        output,
        attrs={"dataset": attrs["name"], "labeler": "silence", "threshold_db": threshold_db},
        labels=labels,
    )
    logger.info("wrote %s", output)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(label_silence)
