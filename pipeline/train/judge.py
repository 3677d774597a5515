"""Stage `train_judge`: the classifier that scores video models, trained on real clips, with its per-head
test accuracy (the bar a table checks before it prints a dataset's column)."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import pandas as pd
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

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


def crop_around_objects(
    frames: Tensor, corners: Tensor, object_size: int, crop: int
) -> tuple[Tensor, Tensor]:
    """A crop x crop window (B, C, crop, crop) of each frame (B, C, H, W), at a random place that holds every
    object (top-left `corners` (B, M, 2)) where they fit, else one of them at random; and the corners in the
    window's pixels. Where every object fits, the window loses nothing: outside it the frame is background."""
    B, _, H, W = frames.shape
    batch = torch.arange(B, device=frames.device)
    low, high = corners.amin(dim=1), corners.amax(dim=1) + object_size  # (B, 2): the box of every object
    one = corners[batch, torch.randint(corners.shape[1], (B,), device=frames.device)]
    fits = ((high - low) <= crop).all(dim=1, keepdim=True)
    low, high = torch.where(fits, low, one), torch.where(fits, high, one + object_size)
    first = (high - crop).clamp_min(0)
    last = torch.minimum(low, torch.tensor([H - crop, W - crop], device=frames.device)).clamp_min(first)
    origin = (first + torch.rand(B, 2, device=frames.device) * (last - first + 1)).long()  # (B, 2)
    span = torch.arange(crop, device=frames.device)
    rows, cols = origin[:, 0, None] + span, origin[:, 1, None] + span  # (B, crop)
    window = frames[batch[:, None, None], :, rows[:, :, None], cols[:, None]]
    return window.permute(0, 3, 1, 2), corners - origin[:, None]  # window: (B, crop, crop, C) before


def locating_loss_fn(dataset_heads: list[JudgeHead], crop: int = 0):
    """Training loss of a LocatingJudge (models/judge.py): the cross-entropy of every cell of one random
    frame per clip (a clip's frames repeat its objects) against the objects' classes where their centres are
    (the dataset's `position` trajectory: each member's top-left corner). With `crop`, every cell of a
    crop x crop window around the objects (`crop_around_objects`), which costs (crop / side)**2 of a frame:
    the objects' cells are what teaches the judge, and the window keeps them."""
    (head,) = dataset_heads

    def locating_loss(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        B, T = x.shape[:2]
        rows = torch.arange(B, device=x.device)
        frame = torch.randint(T, (B,), device=x.device)
        frames, corners = x[rows, frame], targets["position"][rows, frame]  # (B, C, H, W), (B, M, 2)
        if crop:
            _check_crop(crop, net.config, frames.shape[-1])
            frames, corners = crop_around_objects(frames, corners, net.config.object_size, crop)
        logits = net(frames[:, None], places=True)[:, 0]  # (B, K + 1, G, G)
        target = place_targets(
            corners + net.config.object_size / 2,
            torch.stack([targets[m] for m in head.members], dim=1),
            cell=net.config.cell,
            grid=logits.shape[-1],
            n_classes=head.n_classes,
        )
        ce = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        return {f"ce_places_{head.name}": ce, "loss": ce}

    return locating_loss


def _check_crop(crop: int, config, side: int) -> None:
    if not (config.object_size <= crop <= side and crop % config.cell == 0):
        raise ValueError(
            f"judge train_crop {crop}: a crop must hold an object ({config.object_size} px), fit in "
            f"the frame ({side} px) and be a whole number of cells ({config.cell} px); set it in "
            "judge.datasets, or 0"
        )


NORM_STATISTICS_FRAMES = 6400


@torch.no_grad()
def whole_frame_norm_statistics(judge: nn.Module, data: ClipSet, *, batch_size: int, device: str) -> None:
    """Re-estimate a LocatingJudge's BatchNorm statistics on whole frames (one random frame of each clip), as
    it reads them (the precise-BN step of torch.optim.swa_utils.update_bn): trained on crops, it kept the
    crops' statistics, denser in digits, which cost SMMNIST's judge 0.6-1.2 points (docs/judges.md)."""
    generator = torch.Generator().manual_seed(0)

    def frames():
        for x, _ in data.batches(batch_size, shuffle=True, generator=generator, device=device):
            yield x[torch.arange(len(x)), torch.randint(x.shape[1], (len(x),), generator=generator)][:, None]

    update_bn(itertools.islice(frames(), -(-NORM_STATISTICS_FRAMES // batch_size)), judge)


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


CALIBRATION_CLIPS = 1000  # 1000 and 2000 chose temperatures reading within 0.001 on 6 judges (docs/judges.md)


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
    dataset_heads = judge_heads(train_set.factors)
    locating = judge["family"] == "locating_judge"
    loss = locating_loss_fn(dataset_heads, judge["train_crop"]) if locating else judge_loss_fn(dataset_heads)
    # The models' training clips: held out from a judge that has a `judge_train` split of its own
    held_out = load_clips(dataset, "train", limit=CALIBRATION_CLIPS)

    def before_save(trained: nn.Module) -> None:
        batch, device = settings.batch_size, settings.device
        if locating and judge["train_crop"]:
            whole_frame_norm_statistics(trained, train_set, batch_size=batch, device=device)
        calibrate(trained, held_out, batch_size=batch, device=device, bf16=settings.bf16)

    fit_and_save(
        net, judge["family"], loss, train_set, test_set, settings, output, {"dataset": dataset}, before_save
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
