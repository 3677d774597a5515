"""Stage `train_judge`: the classifier that scores video models, trained on real clips, with its per-head
test accuracy (the bar a table checks before it prints a dataset's column)."""

from __future__ import annotations

import dataclasses
import functools
import logging

import pandas as pd
import torch
from torch import Tensor, nn

from pipeline.config import FromConfig
from pipeline.data import h5io
from pipeline.data.clips import ClipSet, load_clips
from pipeline.data.factors import JudgeHead, judge_heads
from pipeline.evaluate import heads
from pipeline.files import atomic_path
from pipeline.train import distributed
from pipeline.train.families import ModelInputs, family
from pipeline.train.loop import autocast
from pipeline.train.model import fit_and_save, train_settings

logger = logging.getLogger(__name__)


def judge_loss_fn(dataset_heads: list[JudgeHead]):
    """Training loss of a judge: the sum of its heads' cross-entropies on the clip
    (pipeline/evaluate/heads.py), plus the same on every frame read alone (models/judge.py: the per-frame
    read learns what a sprite or a digit is from T views of it per clip)."""

    def judge_loss(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        logits, frame_logits = net(x, per_frame=True)
        frames = x.shape[1]
        per_frame_targets = {name: t.repeat_interleave(frames) for name, t in targets.items() if t.dim() == 1}
        terms = {f"ce_{h.name}": heads.head_loss(h, logits[h.name], targets) for h in dataset_heads}
        for h in dataset_heads:
            terms[f"ce_frame_{h.name}"] = heads.head_loss(
                h, frame_logits[h.name].flatten(0, 1), per_frame_targets
            )
        terms["loss"] = sum(terms.values())
        return terms

    return judge_loss


@torch.no_grad()
def judge_accuracy(
    judge: nn.Module, data: ClipSet, *, batch_size: int, device: str, bf16: bool
) -> dict[str, float]:
    """Accuracy of each judge head on real clips (a group head must name the whole multiset)."""
    correct = {h.name: 0 for h in judge_heads(data.factors)}
    for x, targets in data.batches(batch_size, shuffle=False, device="cpu"):
        with autocast(device, bf16):
            probs = heads.probabilities(judge(x.to(device)))
        labels = {name: t.numpy() for name, t in targets.items()}
        for head in judge_heads(data.factors):
            correct[head.name] += int(heads.correct(head, probs[head.name], labels).sum())
    return {name: n / len(data) for name, n in correct.items()}


CALIBRATION_CLIPS = 2000


@torch.no_grad()
def calibrate(judge: nn.Module, data: ClipSet, *, batch_size: int, device: str, bf16: bool) -> None:
    """Fit each group head's temperature on `data` (pipeline/evaluate/heads.py: fit_temperature) and keep
    it in the judge's config, which its file saves. `data` should be clips the judge did not train on: on its
    own clips SMMNIST's judge reads 99.8% at every temperature from 1 to 2 and the fit learns nothing."""
    judge.eval()
    logits: dict[str, list[Tensor]] = {name: [] for name in judge.config.heads}
    for x, _ in data.batches(batch_size, shuffle=False, device="cpu"):
        with autocast(device, bf16):
            for name, out in judge(x.to(device)).items():
                logits[name].append(out.float().cpu())
    labels = {name: t.numpy() for name, t in data.targets.items()}
    temperature = {
        h.name: heads.fit_temperature(h, torch.cat(logits[h.name]), labels) for h in judge_heads(data.factors)
    }
    judge.config = dataclasses.replace(judge.config, temperature=temperature)
    logger.info("judge head temperatures: %s", temperature)


@distributed.data_parallel
def train_judge(
    *,
    dataset: str,
    output: str,
    accuracy: str,
    judge: dict = FromConfig("judge"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """Train the judge on the real training clips (the dataset's `judge_train` split where it has one);
    write it and its per-head test accuracy (CSV)."""
    torch.manual_seed(seed)
    train_set = load_clips(dataset, h5io.judge_training_split(dataset))
    test_set = load_clips(dataset, "test")
    attrs = h5io.read_attrs(dataset)
    net = family("judge").build(ModelInputs(judge, {}, train_set, attrs))
    settings = train_settings(judge, seed=seed, device=device)
    loss = judge_loss_fn(judge_heads(train_set.factors))
    # The models' training clips: held out from a judge that has a `judge_train` split of its own
    held_out = load_clips(dataset, "train", limit=CALIBRATION_CLIPS)
    calibrated = functools.partial(
        calibrate, data=held_out, batch_size=settings.batch_size, device=settings.device, bf16=settings.bf16
    )
    fit_and_save(net, "judge", loss, train_set, test_set, settings, output, {"dataset": dataset}, calibrated)
    if not distributed.world().main:
        return
    net.eval()
    scores = judge_accuracy(
        net, test_set, batch_size=settings.batch_size, device=settings.device, bf16=settings.bf16
    )
    logger.info("judge test accuracy: %s", scores)
    table = pd.DataFrame(
        {
            "dataset": str(attrs["name"]),
            "head": list(scores),
            "accuracy": list(scores.values()),
            "n": len(test_set),
        }
    )
    with atomic_path(accuracy) as tmp:
        table.to_csv(tmp, index=False)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(train_judge)
