"""The judge's label definitions: single-factor heads and SMMNIST's order-free digit pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.factors import Factor, judge_heads
from pipeline.evaluate import heads

DIGITS = tuple("0123456789")
SMMNIST = [
    Factor("digit_a", "static", DIGITS, group="digits"),
    Factor("digit_b", "static", DIGITS, group="digits"),
]
SPRITES = [Factor("action", "dynamic", ("walk", "spell", "slash")), Factor("hair", "static", ("x", "y"))]


def test_a_group_becomes_one_head_and_other_factors_keep_theirs():
    (digits,) = judge_heads(SMMNIST)
    assert (digits.name, digits.kind, digits.classes, digits.members) == (
        "digits",
        "static",
        DIGITS,
        ("digit_a", "digit_b"),
    )
    assert [(h.name, h.members) for h in judge_heads(SPRITES)] == [
        ("action", ("action",)),
        ("hair", ("hair",)),
    ]


def test_a_group_must_share_its_classes():
    bad = [SMMNIST[0], Factor("digit_b", "static", ("odd", "even"), group="digits")]
    with pytest.raises(ValueError, match="group 'digits'"):
        judge_heads(bad)


def test_target_is_the_normalised_digit_count():
    (digits,) = judge_heads(SMMNIST)
    target = heads.target_distribution(
        digits, {"digit_a": torch.tensor([3, 4]), "digit_b": torch.tensor([7, 4])}
    )
    expected = torch.zeros(2, 10)
    expected[0, [3, 7]] = 0.5
    expected[1, 4] = 1.0
    torch.testing.assert_close(target, expected)


def test_the_loss_is_lowest_at_the_target_distribution():
    (digits,) = judge_heads(SMMNIST)
    targets = {"digit_a": torch.tensor([2]), "digit_b": torch.tensor([6])}
    at_target = torch.full((1, 10), -20.0)
    at_target[0, [2, 6]] = 0.0
    only_one = torch.full((1, 10), -20.0)
    only_one[0, 2] = 0.0
    assert heads.head_loss(digits, at_target, targets) < heads.head_loss(digits, only_one, targets)
    assert heads.head_loss(digits, at_target, targets) < heads.head_loss(digits, torch.zeros(1, 10), targets)


def test_prediction_is_the_nearest_multiset():
    (digits,) = judge_heads(SMMNIST)
    probs = np.full((3, 10), 0.01)
    probs[0, [1, 8]] = [0.45, 0.47]  # two digits: the pair
    probs[1, [5, 6]] = [0.80, 0.15]  # 5 is more than 4 times as likely as 6: the digit 5 twice
    probs[2, [5, 6]] = [0.60, 0.30]  # only twice as likely: the pair
    probs /= probs.sum(axis=1, keepdims=True)
    assert heads.predict(digits, probs).tolist() == [[1, 8], [5, 5], [5, 6]]


def test_a_pair_is_recognised_in_either_order():
    (digits,) = judge_heads(SMMNIST)
    probs = np.full((2, 10), 0.0)
    probs[:, [1, 8]] = 0.5
    labels = {"digit_a": np.array([8, 1]), "digit_b": np.array([1, 1])}
    assert heads.correct(digits, probs, labels).tolist() == [True, False]


def test_a_single_factor_head_reads_the_argmax():
    action = judge_heads(SPRITES)[0]
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    assert heads.predict(action, probs)[:, 0].tolist() == [1, 0, 2]
    assert heads.correct(action, probs, {"action": np.array([1, 2, 2])}).tolist() == [True, False, True]


def test_a_temperature_fit_on_clips_reads_two_digits_the_judge_is_unequally_sure_of():
    (digits,) = judge_heads(SMMNIST)
    probs = np.full((2, 10), 0.03 / 9)
    probs[0] = 0.01
    probs[0, 0], probs[0, 1] = 0.8, 0.12  # shows 0 and 1; 6.7 times surer of the 0: the KL rule reads 0 twice
    probs[1, 2] = 0.97  # shows 2 twice, 291 times likelier than any other: read twice up to T = 4.09
    labels = {"digit_a": np.array([0, 2]), "digit_b": np.array([1, 2])}
    assert heads.correct(digits, probs, labels).tolist() == [False, True]
    logits = torch.log(torch.tensor(probs))
    temperature = heads.fit_temperature(digits, logits, labels)
    assert temperature == 1.5, "the grid's temperature nearest 1 above log 6.7 / log 4 = 1.37"
    calibrated = torch.softmax(logits / temperature, dim=-1).numpy()
    assert heads.correct(digits, calibrated, labels).all()


def test_a_single_factor_keeps_temperature_one():
    action, _ = judge_heads(SPRITES)
    assert heads.fit_temperature(action, torch.randn(4, 3), {"action": np.zeros(4, dtype=int)}) == 1.0
