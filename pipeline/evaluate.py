"""Stage `evaluate_model`: Table 1 metrics of one trained model, scored by the judge.

Two generation directions, each repeated R times with fresh prior samples:
- fixed_dynamics: z_1:T is the posterior mean of a test clip, z_f is drawn from p(z_f). The dynamic
  factor (Sprites: the action) must survive: Acc is the judge's action accuracy against the clip's
  label; IS, H(y|x), H(y) use the judge's action distribution on a class-balanced subset.
- fixed_static: z_f is the posterior mean, z_1:T is rolled out from the learned prior. The static
  factors must survive: Acc is the mean judge accuracy over the static heads (each head reported too);
  IS, H(y|x), H(y) use the judge's action distribution of the generated motion.
S3VAE reports one Sprites entry per metric; we report each direction and their average (metric names
without a direction suffix).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from pipeline import metrics
from pipeline.config import resolve_bf16, resolve_device
from pipeline.data import load_clips
from pipeline.h5io import atomic_path, read_attrs
from pipeline.train import load_model
from pipeline.training import autocast

logger = logging.getLogger(__name__)

DIRECTIONS = ("fixed_dynamics", "fixed_static")
COLUMNS = ["dataset", "method", "metric", "value", "std", "n"]


@torch.no_grad()
def regenerate(model: nn.Module, static: Tensor, dynamic: Tensor, keep: str) -> Tensor:
    """Decode posterior means (B, D_f), (B, T, D_z): keep one latent, draw the other from its prior."""
    B, T = dynamic.shape[:2]
    if keep == "fixed_dynamics":
        return model.decode(model.sample_static(B, like=static), dynamic)
    if keep == "fixed_static":
        return model.decode(static, model.sample_dynamic(B, T, like=dynamic))
    raise ValueError(f"unknown direction '{keep}': use one of {DIRECTIONS}")


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
            logits = judge(regenerate(model, static_mean[rows], dynamic_mean[rows], keep))
        for name, out in logits.items():
            probs[name].append(torch.softmax(out.float(), dim=-1).cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in probs.items()}


def score_run(
    probs: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray], factors
) -> dict[str, float]:
    """Metrics of one repeat from the judge's outputs in both directions."""
    dynamic = [f.name for f in factors if f.kind == "dynamic"]
    static = [f.name for f in factors if f.kind == "static"]
    motion = dynamic[0]
    scores: dict[str, float] = {}

    fixed = probs["fixed_dynamics"]
    scores["Acc/fixed_dynamics"] = float(np.mean([metrics.accuracy(fixed[n], labels[n]) for n in dynamic]))
    balanced = metrics.balanced_subset(labels[motion])
    for name, value in metrics.generation_scores(fixed[motion][balanced]).items():
        scores[f"{name}/fixed_dynamics"] = value

    fixed = probs["fixed_static"]
    per_head = {n: metrics.accuracy(fixed[n], labels[n]) for n in static}
    scores["Acc/fixed_static"] = float(np.mean(list(per_head.values())))
    scores.update({f"Acc/fixed_static/{n}": v for n, v in per_head.items()})
    for name, value in metrics.generation_scores(fixed[motion]).items():
        scores[f"{name}/fixed_static"] = value

    for name in ("Acc", "IS", "H(y|x)", "H(y)"):
        scores[name] = (scores[f"{name}/fixed_dynamics"] + scores[f"{name}/fixed_static"]) / 2
    return scores


def evaluate_model(*, model: str, judge: str, dataset: str, output: str, config: dict, method: str) -> None:
    """Score `model` with `judge` on the test split of `dataset`; write tidy rows (COLUMNS) to `output`."""
    device = resolve_device(config["device"])
    part = config["evaluate"]
    data = load_clips(dataset, "test", limit=part["max_sequences"])
    net, judge_net = load_model(model, device), load_model(judge, device)
    labels = {name: t.numpy() for name, t in data.targets.items()}
    bf16 = resolve_bf16(config["train"]["bf16"], device)
    means = posterior_means(net, data, batch_size=part["batch_size"], device=device, bf16=bf16)
    runs = []
    for repeat in range(part["repeats"]):
        torch.manual_seed(config["seed"] * 1000 + repeat)
        probs = {
            keep: judge_generations(
                net, judge_net, means, keep=keep, batch_size=part["batch_size"], device=device, bf16=bf16
            )
            for keep in DIRECTIONS
        }
        runs.append(score_run(probs, labels, data.factors))
        logger.info("repeat %d: Acc %.4f IS %.3f", repeat + 1, runs[-1]["Acc"], runs[-1]["IS"])
    dataset_name = str(read_attrs(dataset)["name"])
    rows = [
        {"dataset": dataset_name, "method": method, "metric": name, "value": mean, "std": std, "n": len(data)}
        for name, (mean, std) in metrics.mean_std(runs).items()
    ]
    with atomic_path(output) as tmp:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False)
