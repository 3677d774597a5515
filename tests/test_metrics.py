"""Table 1 metrics on arrays with known answers, one repeat's scoring, and the two generation directions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models import S3VAE, S3VAEConfig
from pipeline.data import smmnist
from pipeline.data.factors import Factor, judge_heads
from pipeline.data.h5io import GENERATION_DIRECTIONS, Protocol
from pipeline.evaluate import metrics
from pipeline.evaluate.table1 import generate, score_run

K = 5


def one_hot(labels: np.ndarray, k: int = K) -> np.ndarray:
    return np.eye(k)[labels]


def test_confident_and_diverse_predictions_score_is_k():
    probs = one_hot(np.repeat(np.arange(K), 4))  # every class equally often, each prediction certain
    scores = metrics.generation_scores(probs)
    assert scores["IS"] == pytest.approx(K)
    assert scores["H(y|x)"] == pytest.approx(0.0, abs=1e-9)
    assert scores["H(y)"] == pytest.approx(math.log(K))


def test_identical_uniform_predictions_score_is_one():
    scores = metrics.generation_scores(np.full((7, K), 1 / K))
    assert scores["IS"] == pytest.approx(1.0)
    assert scores["H(y|x)"] == pytest.approx(math.log(K))
    assert scores["H(y)"] == pytest.approx(math.log(K))


def test_collapsed_confident_predictions_score_is_one():
    scores = metrics.generation_scores(one_hot(np.zeros(6, dtype=int)))
    assert scores["IS"] == pytest.approx(1.0)
    assert scores["H(y)"] == pytest.approx(0.0, abs=1e-9)


def test_log_is_equals_entropy_gap_on_random_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(K, 0.5), size=50)
    scores = metrics.generation_scores(probs)
    assert math.log(scores["IS"]) == pytest.approx(scores["H(y)"] - scores["H(y|x)"], rel=1e-9)
    assert 1.0 < scores["IS"] < K


def test_entropy_of_a_distribution():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(metrics.entropy(p), [math.log(2), 0.0], atol=1e-9)


def test_balanced_subset_takes_the_first_m_of_every_class():
    labels = np.array([2, 0, 0, 1, 2, 0, 1, 2, 2, 0])  # class counts 4, 2, 4
    picked = metrics.balanced_subset(labels)
    classes, counts = np.unique(labels[picked], return_counts=True)
    assert classes.tolist() == [0, 1, 2] and counts.tolist() == [2, 2, 2]
    assert picked.tolist() == [0, 1, 2, 3, 4, 6]  # sorted, and the first two of each class
    assert metrics.balanced_subset(np.array([1, 1, 1])).tolist() == [0, 1, 2]


def test_mean_std_over_runs():
    runs = [{"Acc": 0.5, "IS": 2.0}, {"Acc": 1.0, "IS": 4.0}]
    result = metrics.mean_std(runs)
    assert result["Acc"] == pytest.approx((0.75, 0.25))
    assert result["IS"] == pytest.approx((3.0, 1.0))


# --- one repeat of evaluate_model ----------------------------------------------------------------------
FACTORS = (
    Factor("action", "dynamic", ("walk", "spell", "slash")),
    Factor("body", "static", ("a", "b")),
    Factor("hair", "static", ("x", "y")),
)


def test_score_run_on_hand_made_probabilities():
    action = np.array([0, 0, 1, 1, 2, 2, 0])  # class 0 has one extra clip: the balanced subset drops it
    body = np.array([0, 1, 0, 1, 0, 1, 0])
    hair = np.array([1, 1, 1, 0, 0, 0, 0])
    labels = {"action": action, "body": body, "hair": hair}
    fixed_dynamics = {
        "action": one_hot(action, 3),  # the motion survives: every clip judged right
        "body": np.full((7, 2), 0.5),
        "hair": np.full((7, 2), 0.5),
    }
    fixed_static = {
        "action": np.full((7, 3), 1 / 3),  # generated motion is undecided
        "body": one_hot(body, 2),  # body survives
        "hair": one_hot(1 - hair, 2),  # hair is always wrong
    }
    probs = {"fixed_dynamics": fixed_dynamics, "fixed_static": fixed_static}
    scores = score_run(probs, labels, judge_heads(FACTORS), Protocol(GENERATION_DIRECTIONS, "action", "tiny"))

    assert scores["Acc/fixed_dynamics"] == 1.0
    assert scores["IS/fixed_dynamics"] == pytest.approx(3.0)  # balanced one-hot over 3 classes
    assert scores["H(y|x)/fixed_dynamics"] == pytest.approx(0.0, abs=1e-9)
    assert scores["H(y)/fixed_dynamics"] == pytest.approx(math.log(3))
    assert scores["Acc/fixed_static/body"] == 1.0
    assert scores["Acc/fixed_static/hair"] == 0.0
    assert scores["Acc/fixed_static"] == 0.5
    assert scores["IS/fixed_static"] == pytest.approx(1.0)
    assert scores["H(y|x)/fixed_static"] == pytest.approx(math.log(3))
    for name in ("Acc", "IS", "H(y|x)", "H(y)"):
        mean = (scores[f"{name}/fixed_dynamics"] + scores[f"{name}/fixed_static"]) / 2
        assert scores[name] == pytest.approx(mean), name
    assert scores["Acc"] == 0.75 and scores["IS"] == pytest.approx(2.0)


def test_smmnist_is_scored_on_the_order_free_digits_with_z_f_fixed():
    factors = [Factor(f"digit_{k}", "static", tuple("0123456789"), group="digits") for k in "ab"]
    labels = {"digit_a": np.array([3, 7, 5, 1]), "digit_b": np.array([7, 3, 5, 2])}
    half = (np.eye(10)[[3, 7, 5, 1]] + np.eye(10)[[7, 3, 5, 2]]) / 2  # exactly each clip's digits
    half[3] = np.eye(10)[9]  # the last clip is judged to show the digit 9 twice: wrong
    scores = score_run({"fixed_static": {"digits": half}}, labels, judge_heads(factors), smmnist.PROTOCOL)

    assert not any("fixed_dynamics" in name for name in scores)
    assert scores["Acc"] == scores["Acc/fixed_static"] == scores["Acc/fixed_static/digits"] == 0.75
    assert scores["H(y|x)"] == pytest.approx((2 * math.log(2)) / 4)  # clips 0 and 1 split over two digits
    assert scores["H(y)"] < math.log(10)


# --- generation ----------------------------------------------------------------------------------------
B, T, SIZE = 3, 4, 16


@pytest.fixture(scope="module")
def tiny_model() -> S3VAE:
    torch.manual_seed(0)
    config = S3VAEConfig(
        image_size=SIZE, conv_channels=(4, 8), frame_dim=12, hidden_dim=10, static_dim=6, dynamic_dim=3
    )
    return S3VAE(config).eval()


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return torch.rand(B, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("keep", GENERATION_DIRECTIONS)
def test_generate_shape_and_fresh_samples(tiny_model, clips, keep):
    torch.manual_seed(0)
    first = generate(tiny_model, clips, keep)
    torch.manual_seed(1)
    second = generate(tiny_model, clips, keep)
    torch.manual_seed(0)
    again = generate(tiny_model, clips, keep)
    assert first.shape == clips.shape
    assert not torch.allclose(first, second), "another seed must draw another prior sample"
    assert torch.equal(first, again)


def test_fixed_dynamics_keeps_the_posterior_mean_of_z_1T(tiny_model, clips, monkeypatch):
    static, dynamic = tiny_model.encode(clips)
    drawn = torch.randn(B, tiny_model.config.static_dim)
    monkeypatch.setattr(tiny_model, "sample_static", lambda batch, like: drawn[:batch])
    with torch.no_grad():
        expected = tiny_model.decode(drawn, dynamic.mean)
        torch.testing.assert_close(generate(tiny_model, clips, "fixed_dynamics"), expected)
        assert not torch.allclose(expected, tiny_model.decode(static.mean, dynamic.mean))


def test_fixed_static_keeps_the_posterior_mean_of_z_f(tiny_model, clips, monkeypatch):
    static, dynamic = tiny_model.encode(clips)
    drawn = torch.randn(B, T, tiny_model.config.dynamic_dim)
    monkeypatch.setattr(
        tiny_model, "sample_dynamic", lambda batch, steps, like, static=None: drawn[:batch, :steps]
    )
    with torch.no_grad():
        expected = tiny_model.decode(static.mean, drawn)
        torch.testing.assert_close(generate(tiny_model, clips, "fixed_static"), expected)
        assert not torch.allclose(expected, tiny_model.decode(static.mean, dynamic.mean))


def test_generate_rejects_an_unknown_direction(tiny_model, clips):
    with pytest.raises(ValueError, match="unknown direction 'both'"):
        generate(tiny_model, clips, "both")


def test_wrong_pixels_counts_disagreements_after_binarising():
    target = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert metrics.wrong_pixels(target, target) == 0.0
    assert metrics.wrong_pixels(np.array([[0.4, 0.6], [0.2, 0.9]]), target) == 0.5
    assert metrics.wrong_pixels(1 - target, target) == 1.0
