"""Stage `evaluate_model`: Table 1 metrics of one trained model, scored by the judge.

A dataset's `Protocol`, which its file carries (pipeline/data/h5io.py), names the generation directions
it is scored in and the judge head whose class distribution p(y|x) gives IS, H(y|x) and H(y). Each
direction is repeated R times with fresh prior samples:
- fixed_dynamics: z_1:T is the posterior mean of a test clip, z_f is drawn from p(z_f). The dynamic
  factors must survive: Acc is the mean judge accuracy over the dynamic heads; the scores use the score
  head on a subset balanced by its labels.
- fixed_static: z_f is the posterior mean, z_1:T is rolled out from the learned prior. The static factors
  must survive: Acc is the mean judge accuracy over the static heads (each head reported too); the scores
  use the score head on every generated clip.
Sprites and moving dSprites are scored in both directions, with the motion head (action, motion) as score
head; the metric names without a direction suffix average the two. SMMNIST is scored as S3VAE scores it,
in the fixed_static direction only: Acc is the fraction of generated clips whose two digits the judge
recognises as the real clip's (order-free, pipeline/evaluate/heads.py), and the scores use the judge's 10-way
digit distribution, where a clip of two different digits judged perfectly has H(y|x) = log 2.

A model without an encoder (MoCoGAN) is scored by `pipeline.evaluate.sampled.table1_probabilities`: groups of
`evaluate.group_size` generated clips share the kept code, and the judge's majority verdict of a group
stands in for the real labels; as many clips are generated as the test split holds.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from pipeline.config import FromConfig, resolve_bf16, resolve_device
from pipeline.data.clips import load_clips
from pipeline.data.factors import JudgeHead, judge_heads
from pipeline.data.h5io import GENERATION_DIRECTIONS, Protocol, read_attrs, read_protocol
from pipeline.evaluate import heads, metrics
from pipeline.evaluate.columns import HEADLINE, METRIC_COLUMNS
from pipeline.evaluate.sampled import table1_probabilities
from pipeline.files import atomic_path
from pipeline.train.checkpoint import load_model
from pipeline.train.families import family_of_model
from pipeline.train.loop import autocast

logger = logging.getLogger(__name__)

_KEPT_KIND = {"fixed_dynamics": "dynamic", "fixed_static": "static"}


@torch.no_grad()
def regenerate(model: nn.Module, static: Tensor, dynamic: Tensor, keep: str) -> Tensor:
    """Decode posterior means (B, D_f), (B, T, D_z): keep one latent, draw the other from its prior."""
    B, T = dynamic.shape[:2]
    if keep == "fixed_dynamics":
        return model.decode(model.sample_static(B, like=static), dynamic)
    if keep == "fixed_static":
        return model.decode(static, model.sample_dynamic(B, T, like=dynamic, static=static))
    raise ValueError(f"unknown direction '{keep}': use one of {GENERATION_DIRECTIONS}")


@torch.no_grad()
def generate(model: nn.Module, x: Tensor, keep: str) -> Tensor:
    """Re-generate clips x (B, T, C, H, W) keeping one latent's posterior mean and sampling the other."""
    static, dynamic = model.encode(x)
    return regenerate(model, static.mean, dynamic.mean, keep)


@torch.no_grad()
def posterior_means(
    model: nn.Module, data, *, batch_size: int, device: str, bf16: bool
) -> tuple[Tensor, Tensor]:
    """Posterior means of every clip, (N, D_f) and (N, T, D_z): computed once, shared by all repeats."""
    static, dynamic = [], []
    for x, _ in data.batches(batch_size, shuffle=False, device=device):
        with autocast(device, bf16):
            q_static, q_dynamic = model.encode(x)
        static.append(q_static.mean.float())
        dynamic.append(q_dynamic.mean.float())
    return torch.cat(static), torch.cat(dynamic)


@torch.no_grad()
def judge_generations(model, judge, means, *, keep: str, batch_size: int, device: str, bf16: bool):
    """Judge probabilities p(y|x) of every head on clips regenerated from `means`: {factor: (N, K)}."""
    static_mean, dynamic_mean = means
    probs: dict[str, list[np.ndarray]] = {name: [] for name in judge.config.heads}
    for start in range(0, len(static_mean), batch_size):
        rows = slice(start, start + batch_size)
        with autocast(device, bf16):
            batch = heads.probabilities(judge(regenerate(model, static_mean[rows], dynamic_mean[rows], keep)))
        for name, p in batch.items():
            probs[name].append(p)
    return {name: np.concatenate(chunks) for name, chunks in probs.items()}


def score_run(
    probs: dict[str, dict[str, np.ndarray]],
    labels: dict[str, np.ndarray],
    judge_heads: list[JudgeHead],
    protocol: Protocol,
) -> dict[str, float]:
    """Metrics of one repeat from the judge's outputs {direction: {head: p(y|x) (N, K)}}."""
    score_head = next(h for h in judge_heads if h.name == protocol.score_head)
    scores: dict[str, float] = {}
    for keep in protocol.directions:
        kept = [h for h in judge_heads if h.kind == _KEPT_KIND[keep]]
        per_head = {h.name: float(heads.correct(h, probs[keep][h.name], labels).mean()) for h in kept}
        scores[f"Acc/{keep}"] = float(np.mean(list(per_head.values())))
        if keep == "fixed_static":
            scores.update({f"Acc/{keep}/{name}": value for name, value in per_head.items()})
        judged = probs[keep][score_head.name]
        if keep == "fixed_dynamics" and len(score_head.members) == 1:
            judged = judged[metrics.balanced_subset(labels[score_head.members[0]])]
        for name, value in metrics.generation_scores(judged).items():
            scores[f"{name}/{keep}"] = value
    for name in HEADLINE:
        scores[name] = float(np.mean([scores[f"{name}/{keep}"] for keep in protocol.directions]))
    return scores


def table1_runs(
    net: nn.Module,
    judge_net: nn.Module,
    data,
    protocol: Protocol,
    *,
    evaluate: dict,
    device: str,
    bf16: bool,
    seed: int,
) -> list[dict[str, float]]:
    """The Table 1 scores of `net` on the clips `data`, one dict per repeat (`evaluate.repeats`, each with
    fresh prior samples, repeat r seeded from seed * 1000 + r)."""
    dataset_heads = judge_heads(data.factors)
    batch_size = evaluate["batch_size"]
    if family_of_model(net).encoder:  # keep posterior means of the real clips, score against their labels
        labels = {name: t.numpy() for name, t in data.targets.items()}
        means = posterior_means(net, data, batch_size=batch_size, device=device, bf16=bf16)

        def judged_repeat():
            probs = {
                keep: judge_generations(
                    net, judge_net, means, keep=keep, batch_size=batch_size, device=device, bf16=bf16
                )
                for keep in protocol.directions
            }
            return probs, labels
    else:  # no encoder: the kept code is sampled and the judge's group verdict is the label
        group_size = evaluate["group_size"]

        def judged_repeat():
            with autocast(device, bf16):
                return table1_probabilities(
                    net,
                    judge_net,
                    dataset_heads,
                    directions=protocol.directions,
                    groups=max(len(data) // group_size, 1),
                    group_size=group_size,
                    steps=data.frames.shape[1],
                    batch_size=batch_size,
                )

    runs = []
    for repeat in range(evaluate["repeats"]):
        torch.manual_seed(seed * 1000 + repeat)
        runs.append(score_run(*judged_repeat(), dataset_heads, protocol))
        logger.info("repeat %d: Acc %.4f IS %.3f", repeat + 1, runs[-1]["Acc"], runs[-1]["IS"])
    return runs


def evaluate_model(
    *,
    model: str,
    judge: str,
    dataset: str,
    output: str,
    method: str,
    training_seed: int = 0,
    evaluate: dict = FromConfig("evaluate"),
    bf16: bool | str = FromConfig("train.bf16"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """Score `model` (row `method`, training seed `training_seed`) with `judge` on the test split of
    `dataset`; write tidy rows (METRIC_COLUMNS) to `output`."""
    protocol = read_protocol(dataset)  # before anything loads: a file without one fails at once
    device = resolve_device(device)
    data = load_clips(dataset, "test", limit=evaluate["max_sequences"])
    net, judge_net = load_model(model, device), load_model(judge, device)
    dataset_name = str(read_attrs(dataset)["name"])
    runs = table1_runs(
        net,
        judge_net,
        data,
        protocol,
        evaluate=evaluate,
        device=device,
        bf16=resolve_bf16(bf16, device),
        seed=seed + training_seed,
    )
    identity = {"dataset": dataset_name, "method": method, "seed": training_seed}
    rows = [
        {**identity, "metric": name, "value": mean, "std": std, "n": len(data)}
        for name, (mean, std) in metrics.mean_std(runs).items()
    ]
    with atomic_path(output) as tmp:
        pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(evaluate_model)
