"""Training throughput (sequences per second) of every model family at paper sizes.

    python benchmarks/bench_models.py [--models NAME,...] [--device cpu|cuda] [--threads N] [--steps N]
        [--warmup N] [--batch-size B]

One step is what `pipeline.train.loop.train_one_epoch` does per batch (forward, loss, backward, gradient
clipping, an Adam step) in fp32, on a batch of random uint8 clips made into input with
`pipeline.data.clips.to_input` (binary for the bouncing-ball models). MoCoGAN has no such loss: its step is
one discriminator update on the real batch against a generated one, then one generator update on a freshly
generated batch, each with its own Adam. Sprites-shaped models see 8 x 64 x 64 x 3 clips, the bouncing-ball
models (DSVAE section 4.3) 30 x 32 x 32 x 1. Times are the median step after the warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import models  # noqa: E402
from pipeline.data.clips import to_input  # noqa: E402
from pipeline.train.families import family  # noqa: E402

SPRITES = (8, 64, 3)  # T, side, channels
BOUNCING = (30, 32, 1)
BOUNCING_CONVS = (64, 128, 256)  # 32 -> 4 px, as (64, 128, 256, 512) takes 64 -> 4 px


@dataclass(frozen=True)
class Case:
    family: str
    config: object
    clips: tuple[int, int, int]  # T, side, channels
    about: str


CASES = {
    "s3vae": Case("s3vae", models.S3VAEConfig(), SPRITES, "S3VAE baseline (reference)"),
    "dsvae": Case("dsvae", models.DSVAEConfig(), SPRITES, "factorised q"),
    "dsvae_full": Case("dsvae", models.DSVAEConfig(encoder="full"), SPRITES, "full q"),
    "unordered": Case("unordered", models.UnorderedConfig(), SPRITES, "N = 3 frames for q(f), D_z 2"),
    "mocogan": Case("mocogan", models.MoCoGANConfig(), SPRITES, "one D step + one G step"),
    "bouncing_stochastic": Case(
        "dsvae",
        models.DSVAEConfig(
            in_channels=1, image_size=32, conv_channels=BOUNCING_CONVS, dynamic_dim=16, likelihood="bernoulli"
        ),
        BOUNCING,
        "DSVAE, z_t of 16",
    ),
    **{
        f"bouncing_{dynamics}": Case(
            "dsvae",
            models.DSVAEConfig(
                in_channels=1,
                image_size=32,
                conv_channels=BOUNCING_CONVS,
                dynamic_dim=64,
                dynamics=dynamics,
                likelihood="bernoulli",
            ),
            BOUNCING,
            f"LSTM-{dynamics[-1]}, z of 64, 512-d LSTM",
        )
        for dynamics in ("lstm_f", "lstm_c")
    },
}


def random_clips(batch_size: int, clips: tuple[int, int, int], device: str) -> torch.Tensor:
    T, side, channels = clips
    frames = torch.randint(0, 256, (batch_size, T, side, side, channels), dtype=torch.uint8)
    if channels == 1:
        frames = (frames > 230).to(torch.uint8) * 255  # sparse binary frames, as the bouncing ball's
    return to_input(frames.to(device))  # (B, T, C, H, W)


def vae_step(model: nn.Module, x: torch.Tensor, lr: float) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step() -> None:
        loss = model.loss(x, model(x), {}, dataset_size=len(x))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1e4)
        optimizer.step()

    return step


def gan_step(model: models.MoCoGAN, real: torch.Tensor, lr: float) -> Callable[[], None]:
    d_optimizer = torch.optim.Adam(model.discriminator_parameters(), lr=lr, betas=(0.5, 0.999))
    g_optimizer = torch.optim.Adam(model.generator_parameters(), lr=lr, betas=(0.5, 0.999))
    B, T = real.shape[:2]

    def step() -> None:
        with torch.no_grad():  # the discriminator's step needs no generator graph
            fake = model.generate(B, T)
        d_loss = model.discriminator_loss(real, fake)["loss"]
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        g_loss = model.generator_loss(model.generate(B, T))["loss"]
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()

    return step


def measure(case: Case, *, batch_size: int, steps: int, warmup: int, device: str) -> dict:
    torch.manual_seed(0)
    model = family(case.family).model_class(case.config).to(device).train()
    x = random_clips(batch_size, case.clips, device)
    step = gan_step(model, x, 2e-4) if case.family == "mocogan" else vae_step(model, x, 5e-4)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    step_s = statistics.median(times)
    params = sum(p.numel() for p in model.parameters())
    return {"step_s": step_s, "seq_s": batch_size / step_s, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    names = args.models.split(",") if args.models else list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(CASES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
        f"batch {args.batch_size}, fp32; median of {args.steps} steps after {args.warmup} warm-up\n"
    )
    print(f"{'model':<22}{'clips':<14}{'params M':>9}{'seq/s':>8}{'ms/step':>9}  notes")
    for name in names:
        case = CASES[name]
        r = measure(
            case, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, device=args.device
        )
        T, side, channels = case.clips
        clips = f"{T}x{side}x{side}x{channels}"
        print(
            f"{name:<22}{clips:<14}{r['params'] / 1e6:>9.1f}{r['seq_s']:>8.1f}{1e3 * r['step_s']:>9.0f}  "
            f"{case.about}",
            flush=True,
        )


if __name__ == "__main__":
    main()
