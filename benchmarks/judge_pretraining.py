"""How fast can SMMNIST's judge learn the digit pairs? Its per-frame read pretrained on MNIST digits, then
the whole judge on windows of the judge clips, scored on whole test clips against training seconds
(docs/judges.md).

    python benchmarks/judge_pretraining.py                                  # 4 pretraining epochs, 300 s
    python benchmarks/judge_pretraining.py --pretrain-epochs 0 --lr 3e-4    # no pretraining
    python benchmarks/judge_pretraining.py --steps 1650                      # cosine to 0 over 1650 steps

The trunk and per-frame `digits` head of the quick judge first learn single MNIST training digits, scaled
to 32 x 32 as SMMNIST draws them (a still image: no frame change); then the whole judge trains on
`--window`-frame windows of `results/data/smmnist.h5`'s judge clips with the workflow's loss
(pipeline/train/judge.py). Every `--every` seconds of training (evaluation excluded) it prints the exact
pairs read on whole test clips by the clip head and by the frames' own heads averaged over the clip. Build
the inputs first:
`snakemake --cores 1 results/data/smmnist.h5 resources/mnist/SHA256SUMS --config preset=quick mirror=...`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.judge import Judge, JudgeConfig  # noqa: E402
from pipeline.data.clips import load_clips  # noqa: E402
from pipeline.data.factors import judge_heads  # noqa: E402
from pipeline.data.smmnist import MovingDigitsSpec, load_mnist  # noqa: E402
from pipeline.evaluate import heads  # noqa: E402
from pipeline.train.judge import judge_loss_fn  # noqa: E402


def pretrain(net: Judge, mnist: Path, epochs: float, batch_size: int = 128) -> None:
    """The per-frame read learns single still MNIST digits, at SMMNIST's digit size."""
    images, labels = load_mnist(mnist, "train")
    side = MovingDigitsSpec().digit_size
    digits = np.stack([cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR) for img in images])
    x_all = torch.from_numpy(digits).float().div(255)[:, None]  # (n, 1, 32, 32)
    y_all = torch.from_numpy(labels.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(int(epochs * len(x_all) / batch_size)):
        rows = torch.randint(0, len(x_all), (batch_size,), generator=generator)
        x = x_all[rows]
        h = net.convs(torch.cat([x, torch.zeros_like(x)], dim=1))  # the frame beside no change
        pooled = torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=-1)
        loss = F.cross_entropy(net.frame_heads["digits"](pooled), y_all[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def pairs_read(net: Judge, test, head) -> tuple[float, float]:
    """Exact pairs read on whole test clips: by the clip head, and by the frames' heads averaged."""
    net.eval()
    by_clip, by_frames = [], []
    for x, targets in test.batches(250, shuffle=False):
        clip, frames = net(x, per_frame=True)
        labels = {name: t.numpy() for name, t in targets.items()}
        by_clip.append(heads.correct(head, heads.probabilities(clip)[head.name], labels))
        mean = torch.softmax(frames[head.name], dim=-1).mean(dim=1).numpy()
        by_frames.append(heads.correct(head, mean, labels))
    net.train()
    return float(np.concatenate(by_clip).mean()), float(np.concatenate(by_frames).mean())


class TrainingClock:
    """Seconds of training since the start: the time spent scoring is left out."""

    def __init__(self):
        self.started, self.scoring = time.perf_counter(), 0.0

    def __call__(self) -> float:
        return time.perf_counter() - self.started - self.scoring

    def report(self, tag: str, net: Judge, test, head) -> None:
        begun = time.perf_counter()
        clip, frames = pairs_read(net, test, head)
        self.scoring += time.perf_counter() - begun
        print(
            f"{tag:>14}  {self():6.0f} s  pairs: clip head {clip:.3f}, frames' mean {frames:.3f}", flush=True
        )


def train(net: Judge, head, train_set, test, clock: TrainingClock, args: argparse.Namespace) -> None:
    """The whole judge on windows of the judge clips, until the seconds or steps run out."""
    loss_fn = judge_loss_fn([head])
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps) if args.steps else None
    generator = torch.Generator().manual_seed(1)
    step, next_report = 0, args.every

    def done() -> bool:
        return step >= args.steps if args.steps else clock() >= args.seconds

    while not done():
        for x, targets in train_set.batches(args.batch_size, shuffle=True, generator=generator):
            start = int(torch.randint(0, x.shape[1] - args.window + 1, (1,), generator=generator))
            loss = loss_fn(net, x[:, start : start + args.window], targets)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if schedule is not None:
                schedule.step()
            if done():
                break
            if clock() >= next_report:
                clock.report(f"step {step}", net, test, head)
                next_report += args.every
    clock.report(f"end, step {step}", net, test, head)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default=str(ROOT / "results/data/smmnist.h5"))
    parser.add_argument("--mnist", default=str(ROOT / "resources/mnist"))
    parser.add_argument("--pretrain-epochs", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget, pretraining included")
    parser.add_argument("--steps", type=int, default=0, help="a step budget instead, with a cosine LR to 0")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--window", type=int, default=4, help="frames per training clip")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=float, default=60.0, help="seconds of training between scores")
    parser.add_argument("--test-clips", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    train_set = load_clips(args.dataset, "judge_train")
    test = load_clips(args.dataset, "test", limit=args.test_clips)
    (head,) = judge_heads(train_set.factors)
    config = JudgeConfig(
        in_channels=1,
        conv_channels=(16, 32, 64, 128),
        frame_dim=128,
        hidden_dim=64,
        heads={head.name: head.n_classes},
    )
    net = Judge(config)
    clock = TrainingClock()
    if args.pretrain_epochs > 0:
        pretrain(net, Path(args.mnist), args.pretrain_epochs)
        clock.report("pretrained", net, test, head)
    train(net, head, train_set, test, clock, args)


if __name__ == "__main__":
    main()
