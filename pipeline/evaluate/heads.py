"""How each judge head (pipeline/data/factors.py: one per factor or group of factors) is trained, and how
its output is read.

A head outputs one distribution p(y|x) over the classes, and its training target is the multiset's
normalised count vector: one-hot for a single factor, (1/2, 1/2) on two different digits, 1 on a digit
shown twice.

A head's prediction is the multiset whose target is nearest to p(y|x) in KL(target || p). For a single
factor that is the argmax; for a pair of digits it is the two most likely digits, or one digit shown
twice when it is more than 4 times as likely as the runner-up (its KL is -log p1, the pair's is
-log 2 - (log p1 + log p2) / 2). A clip counts as recognised when the predicted multiset is the true one.

Trained on (1/2, 1/2), a judge ends up surer of one digit than of the other, and the rule then reads two
different digits as one shown twice (41 of the 62 clips SMMNIST's quick judge missed). A temperature on the
head's logits, fit on held-out clips after training (`fit_temperature`), puts the threshold where the
judge's own outputs need it (docs/judges.md).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from pipeline.data.factors import JudgeHead


def target_distribution(head: JudgeHead, targets: dict[str, Tensor]) -> Tensor:
    """(B, K) normalised class counts of the head's member labels."""
    hot = sum(F.one_hot(targets[m].long(), head.n_classes) for m in head.members)
    return hot.float() / len(head.members)


def head_loss(head: JudgeHead, logits: Tensor, targets: dict[str, Tensor]) -> Tensor:
    """Cross-entropy of the head's logits (B, K) against its target distribution."""
    if len(head.members) == 1:
        return F.cross_entropy(logits, targets[head.members[0]].long())
    return F.cross_entropy(logits, target_distribution(head, targets))


def _candidates(head: JudgeHead) -> tuple[np.ndarray, np.ndarray]:
    """Every multiset of the head's size: sorted members (M, m) and their target distributions (M, K)."""
    sets = np.array(list(itertools.combinations_with_replacement(range(head.n_classes), len(head.members))))
    dists = np.zeros((len(sets), head.n_classes))
    for column in sets.T:
        dists[np.arange(len(sets)), column] += 1.0 / len(head.members)
    return sets, dists


def predict(head: JudgeHead, probs: np.ndarray) -> np.ndarray:
    """The predicted multiset of every clip, sorted class indices (N, members), from p(y|x) (N, K)."""
    sets, dists = _candidates(head)
    log_probs = np.log(np.clip(probs, 1e-12, None))  # (N, K)
    neg_entropy = (dists * np.log(np.where(dists > 0, dists, 1.0))).sum(axis=1)  # (M,)
    kl = neg_entropy[None] - log_probs @ dists.T  # (N, M): KL(target || p) of every candidate
    return sets[kl.argmin(axis=1)]


def true_multisets(head: JudgeHead, labels: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted class indices (N, members) of the head's labels."""
    return np.sort(np.stack([labels[m] for m in head.members], axis=1), axis=1)


def correct(head: JudgeHead, probs: np.ndarray, labels: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: the head recognised the clip's multiset exactly."""
    return (predict(head, probs) == true_multisets(head, labels)).all(axis=1)


TEMPERATURES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)  # at T the pair rule's threshold is 4**T


def fit_temperature(head: JudgeHead, logits: Tensor, labels: dict[str, np.ndarray]) -> float:
    """The temperature of a group head's logits (N, K) under which it reads the most of these clips'
    multisets right (the one nearest 1 among equals); a single factor's argmax does not depend on it: 1."""
    if len(head.members) == 1:
        return 1.0
    probs = {t: torch.softmax(logits.float() / t, dim=-1).numpy() for t in TEMPERATURES}
    right = {t: correct(head, p, labels).mean() for t, p in probs.items()}
    return max(TEMPERATURES, key=lambda t: (right[t], -abs(math.log(t))))


@torch.no_grad()
def probabilities(logits: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {name: torch.softmax(out.float(), dim=-1).cpu().numpy() for name, out in logits.items()}
