"""Metrics as pure functions on arrays (natural logarithms throughout)."""

from __future__ import annotations

import numpy as np


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis)


def generation_scores(probs: np.ndarray) -> dict[str, float]:
    """Judge-based scores of generated clips, from the judge's p(y|x) of each clip (n, K).

    IS = exp(E_x KL(p(y|x) || p(y))), H(y|x) = E_x H(p(y|x)), H(y) = H(E_x p(y|x)); so log IS = H(y) - H(y|x).
    """
    marginal = probs.mean(axis=0)
    kl = (probs * (np.log(np.clip(probs, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None)))).sum(axis=1)
    return {
        "IS": float(np.exp(kl.mean())),
        "H(y|x)": float(entropy(probs).mean()),
        "H(y)": float(entropy(marginal)),
    }


def balanced_subset(labels: np.ndarray) -> np.ndarray:
    """Indices of the first m clips of every class, m the size of the rarest class present."""
    classes, counts = np.unique(labels, return_counts=True)
    m = counts.min()
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:m] for c in classes]))


def mean_std(runs: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and (population) standard deviation of every metric over repeated runs."""
    return {
        name: (float(np.mean([r[name] for r in runs])), float(np.std([r[name] for r in runs])))
        for name in runs[0]
    }


def wrong_pixels(predicted: np.ndarray, target: np.ndarray) -> float:
    """DSVAE Fig. 8: the fraction of pixels of binary frames that a reconstruction or prediction gets wrong,
    both binarised at 0.5 (pixel means in [0, 1])."""
    return float(((predicted > 0.5) != (target > 0.5)).mean())


def mean_kl(probs: np.ndarray, reference: np.ndarray) -> float:
    """The mean over rows of KL(p_i || q_i) for paired distributions p (n, K) and q (n, K), or q (1, K)
    shared by every row: DSVAE Table 1's KL[p_recon || p_data] (a generated clip against its real clip) and
    KL[p_random || p_data] (the uniform distribution against each real clip)."""
    # float64 and renormalised: float32 softmax rows sum to 1 only within ~1e-7, enough to turn a KL of
    # near-identical distributions negative
    p, q = (np.clip(a.astype(np.float64), 1e-12, None) for a in (probs, reference))
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    return float((p * (np.log(p) - np.log(q))).sum(axis=1).mean())
