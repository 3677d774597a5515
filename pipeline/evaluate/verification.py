"""Stage `evaluate_verification`: speaker verification from latents (DSVAE section 4.2, S3VAE Table 3).

Each test utterance gets two embeddings: the mean of mu_f (the static posterior mean) over its segments,
and the mean of mu_z (the dynamic posterior mean) over time and segments. Every pair of test utterances
is a trial, scored by the cosine similarity of their embeddings; a trial is a target when both utterances
share the speaker. The equal error rate (EER) is where the false-acceptance and false-rejection rates
meet: low for z_f means it carries the speaker, high (near 50%) for z_1:T means the content latent does not.
On FSDD the test speakers are the training speakers (utterances are held out, not speakers).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline.config import FromConfig, resolve_device
from pipeline.data import h5io
from pipeline.data.clips import load_clips
from pipeline.evaluate.columns import VERIFICATION_COLUMNS
from pipeline.evaluate.table1 import posterior_means
from pipeline.files import atomic_path
from pipeline.train.checkpoint import load_model

logger = logging.getLogger(__name__)

FEATURES = {"static": "z_f", "dynamic": "z_1:T"}


def utterance_means(segment_values: np.ndarray, utterance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the segments (and any time axis) of each utterance: (N, [T,] D) -> (U, D), with the
    utterance ids in sorted order."""
    ids, inverse = np.unique(utterance, return_inverse=True)
    flat = segment_values.reshape(len(segment_values), -1, segment_values.shape[-1]).mean(1)  # (N, D)
    sums = np.zeros((len(ids), flat.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, flat)
    return ids, sums / np.bincount(inverse)[:, None]


def cosine_trials(embeddings: np.ndarray, speakers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and target flag (same speaker) of every unordered pair of utterances."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    first, second = np.triu_indices(len(unit), k=1)
    scores = np.einsum("nd,nd->n", unit[first], unit[second])
    return scores, speakers[first] == speakers[second]


def equal_error_rate(scores: np.ndarray, targets: np.ndarray) -> float:
    """EER of trials accepted when score >= threshold, interpolated linearly between the two thresholds
    where the false-acceptance rate (FAR) overtakes the false-rejection rate (FRR)."""
    targets = np.asarray(targets, dtype=bool)
    if targets.all() or not targets.any():
        raise ValueError("an EER needs both target and non-target trials")
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked, hits = np.asarray(scores)[order], targets[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold accepts all tied scores or none
    accepted_targets = np.r_[0, np.cumsum(hits)[last_of_tie]]
    accepted_others = np.r_[0, np.cumsum(~hits)[last_of_tie]]
    far = accepted_others / (~targets).sum()
    frr = 1 - accepted_targets / targets.sum()
    gap = frr - far  # starts at 1, ends at -1, never increases
    i = int(np.argmax(gap <= 0))
    weight = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(far[i - 1] + weight * (far[i] - far[i - 1]))


def verification_eers(
    static: np.ndarray, dynamic: np.ndarray, utterance: np.ndarray, speaker: np.ndarray
) -> dict[str, dict[str, float]]:
    """{"static"|"dynamic": {"eer", "utterances", "trials"}} from per-segment posterior means."""
    ids, _ = utterance_means(static, utterance)
    speaker_of = dict(zip(utterance, speaker, strict=True))
    speakers = np.array([speaker_of[u] for u in ids])
    results = {}
    for name, values in (("static", static), ("dynamic", dynamic)):
        _, embeddings = utterance_means(values, utterance)
        scores, targets = cosine_trials(embeddings, speakers)
        results[name] = {
            "eer": equal_error_rate(scores, targets),
            "utterances": len(ids),
            "trials": len(scores),
        }
    return results


def evaluate_verification(
    *,
    model: str,
    dataset: str,
    output: str,
    method: str,
    batch_size: int = FromConfig("evaluate.batch_size"),
    device: str = FromConfig("device"),
) -> None:
    """EER of z_f and z_1:T embeddings of `model` over all pairs of test utterances; tidy CSV
    (VERIFICATION_COLUMNS)."""
    device = resolve_device(device)
    data = load_clips(dataset, "test")
    net = load_model(model, device)
    static, dynamic = posterior_means(net, data, batch_size=batch_size, device=device, bf16=False)
    results = verification_eers(
        static.numpy(), dynamic.numpy(), data.targets["sequence_id"].numpy(), data.targets["speaker"].numpy()
    )
    name = str(h5io.read_attrs(dataset)["name"])
    note = (
        "FSDD: held-out utterances of the 6 training speakers" if name == "fsdd" else "core test set, no SA"
    )
    dims = {"static": net.config.static_dim, "dynamic": net.config.dynamic_dim}
    rows = [
        {"dataset": name, "model": method, "feature": FEATURES[kind], "dim": dims[kind], **r, "note": note}
        for kind, r in results.items()
    ]
    for row in rows:
        logger.info("%s %s (%d-d): EER %.2f%%", method, row["feature"], row["dim"], 100 * row["eer"])
    with atomic_path(output) as tmp:
        pd.DataFrame(rows, columns=VERIFICATION_COLUMNS).to_csv(tmp, index=False)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(evaluate_verification)
