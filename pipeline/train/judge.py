"""Stage `train_judge`: the classifier that scores video models, trained on real clips, with its per-head
test accuracy (the bar a table checks before it prints a dataset's column)."""

from __future__ import annotations

import dataclasses
import functools
import logging

import pandas as pd
import torch
from torch import Tensor, nn

from pipeline.config import FromConfig, judge_settings
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


def place_targets(centres: Tensor, classes: Tensor, *, cell: int, grid: int, n_classes: int) -> Tensor:
    """Each cell's target distribution (B, n_classes + 1, grid, grid) for objects of `classes` (B, M) centred
    at `centres` (B, M, 2) pixels (row, col): an object's class is shared bilinearly among the four cells
    nearest its centre, so a target moves smoothly with the object; the last class is 'no centre here'."""
    B, M = classes.shape
    target = centres.new_zeros(B, n_classes + 1, grid, grid)
    at = centres / cell - 0.5  # in cells, cell centres at whole numbers
    low = at.floor()
    rows = torch.arange(B, device=centres.device)
    for k in range(M):
        for dr in (0, 1):
            for dc in (0, 1):
                r, c = low[:, k, 0] + dr, low[:, k, 1] + dc
                share = (1 - (at[:, k, 0] - r).abs()) * (1 - (at[:, k, 1] - c).abs())
                r, c = r.long().clamp(0, grid - 1), c.long().clamp(0, grid - 1)
                target[rows, classes[:, k].long(), r, c] += share
    target[:, -1] = (1 - target[:, :-1].sum(dim=1)).clamp_min(0)
    return target / target.sum(dim=1, keepdim=True)


def locating_loss_fn(dataset_heads: list[JudgeHead]):
    """Training loss of a LocatingJudge (models/judge.py): the cross-entropy of every cell of one random
    frame per clip (a clip's frames repeat its objects) against the objects' classes where their centres are
    (the dataset's `position` trajectory: each member's top-left corner)."""
    (head,) = dataset_heads

    def locating_loss(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        B, T = x.shape[:2]
        rows = torch.arange(B, device=x.device)
        frame = torch.randint(T, (B,), device=x.device)
        logits = net(x[rows, frame, None], places=True)[:, 0]  # (B, K + 1, G, G)
        target = place_targets(
            targets["position"][rows, frame] + net.config.object_size / 2,
            torch.stack([targets[m] for m in head.members], dim=1),
            cell=net.config.cell,
            grid=logits.shape[-1],
            n_classes=head.n_classes,
        )
        ce = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        return {f"ce_places_{head.name}": ce, "loss": ce}

    return locating_loss


JUDGE_LOSSES = {"judge": judge_loss_fn, "locating_judge": locating_loss_fn}


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
    # The rule passes the dataset's settings already merged; a Python caller may pass the whole section
    judge = judge_settings(judge, str(attrs["name"]))
    net = family(judge["family"]).build(ModelInputs(judge, {}, train_set, attrs))
    settings = train_settings(judge, seed=seed, device=device)
    loss = JUDGE_LOSSES[judge["family"]](judge_heads(train_set.factors))
    # The models' training clips: held out from a judge that has a `judge_train` split of its own
    held_out = load_clips(dataset, "train", limit=CALIBRATION_CLIPS)
    calibrated = functools.partial(
        calibrate, data=held_out, batch_size=settings.batch_size, device=settings.device, bf16=settings.bf16
    )
    fit_and_save(
        net, judge["family"], loss, train_set, test_set, settings, output, {"dataset": dataset}, calibrated
    )
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
