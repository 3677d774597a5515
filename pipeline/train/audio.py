"""Stage `train_audio_model`: S3VAE, DSVAE or FHVAE on speech feature segments (S3VAE Table 3, DSVAE
Table 2), with the silence pseudo labels as S3VAE's DFP target."""

from __future__ import annotations

import logging

import torch

from pipeline.config import FromConfig
from pipeline.data import h5io
from pipeline.data.clips import ClipSet, load_clips
from pipeline.train.families import ModelInputs, family, variant_family, variant_settings
from pipeline.train.model import fit_and_save, train_settings, vae_loss_fn

logger = logging.getLogger(__name__)


def index_sequences(train_set: ClipSet, test_set: ClipSet) -> None:
    """Add FHVAE's targets: `sequence_index`, each training segment's row in the mu2 table (-1 for test
    segments, whose utterances have no row), and `sequence_segments`, the segments of its utterance."""
    for data, seen in ((train_set, True), (test_set, False)):
        ids = data.targets["sequence_id"]
        _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        data.targets["sequence_index"] = inverse if seen else torch.full_like(ids, -1)
        data.targets["sequence_segments"] = counts[inverse]


def train_audio_model(
    *,
    dataset: str,
    labels: str,
    output: str,
    variant: dict,
    architecture: dict = FromConfig("audio.model"),
    train: dict = FromConfig("audio.train"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """Train the audio row `variant` (`pipeline.train.families.audio_variant`: a family, its settings and
    latent sizes) on `dataset` and its silence labels; write the model to `output` (run directory beside
    it, as `train_model`)."""
    torch.manual_seed(seed)
    train_set = load_clips(dataset, "train", labels=labels)
    test_set = load_clips(dataset, "test", labels=labels)
    index_sequences(train_set, test_set)
    name = variant_family(variant)
    inputs = ModelInputs(architecture, variant_settings(variant), train_set, h5io.read_attrs(dataset))
    model = family(name).build(inputs)
    logger.info("training %s on %d segments: %s", name, len(train_set), model.config)
    settings = train_settings(train, seed=seed, device=device)
    inputs = {"dataset": dataset, "labels": labels}
    fit_and_save(model, name, vae_loss_fn(train_set), train_set, test_set, settings, output, inputs)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(train_audio_model)
