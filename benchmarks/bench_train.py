"""Training throughput of S3VAE `full` (sequences per second), peak memory and GFLOP/s, per configuration.

    python benchmarks/bench_train.py [--preset paper|quick] [--device cpu|cuda] [--threads N]
        [--steps N] [--warmup N] [--batch-size B] [--configs NAME,...] [--compile] [--compile-timeout S]

One step is what `pipeline.train.loop.train_one_epoch` does per batch: forward and S3VAE loss (under
`pipeline.train.loop.autocast` for bf16), backward, gradient clipping and an Adam step, on random uint8 clips
converted with `pipeline.data.clips.to_input` and random flow labels (`flow_topk`, `flow_direction`). The
network is variant `full` of config.yaml at the preset's sizes (`paper`: (64, 128, 256, 512) convs, D_h 128,
hidden 256, D_f 256, D_z 32: the authors' recipe, README).
The configurations differ only in numerics and memory layout (see SETUPS); each runs in a fresh process, so
peak memory, allocator state and compile caches do not leak from one into the next. Times are the median
step after the warm-up steps; the first step's time is reported apart (with --compile it holds compilation).
FLOPs per step are counted once with torch.utils.flop_counter.FlopCounterMode on the meta device (there the
LSTMs decompose into matmuls and are counted too; the optimiser's elementwise work is not).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import models  # noqa: E402
from models import blocks  # noqa: E402
from pipeline import config as config_io  # noqa: E402
from pipeline.data.clips import ClipSet, to_input  # noqa: E402
from pipeline.train.families import ModelInputs, s3vae_config, variant_settings  # noqa: E402
from pipeline.train.loop import autocast  # noqa: E402

T, SIZE, CHANNELS = 8, 64, 3
DATASET_SIZE = 9000  # N in the MI estimator: a constant log N offset, no effect on speed
COMPILE_CACHES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
CPU_TARGET = 1.5  # the training step's speed-up over fp32-nchw that CPU training should reach


@dataclass(frozen=True)
class Setup:
    bf16: bool  # autocast to bfloat16 (pipeline.train.loop.autocast)
    channels_last_activations: bool  # False switches off the channels_last conversions in models/blocks.py
    channels_last_weights: bool  # model.to(memory_format=torch.channels_last)
    compile: bool  # torch.compile(model), as pipeline.train.loop.fit does with train.compile
    about: str


SETUPS = {
    "fp32-nchw": Setup(False, False, False, False, "fp32 eager, NCHW activations and weights: the baseline"),
    "fp32-clact": Setup(
        False, True, False, False, "fp32, the model code's channels_last activations, NCHW weights"
    ),
    "fp32-cl": Setup(False, True, True, False, "fp32, channels_last activations and weights"),
    "bf16-nchw": Setup(True, False, False, False, "bf16 autocast, NCHW activations and weights"),
    "bf16-clact": Setup(True, True, False, False, "bf16 autocast, channels_last activations, NCHW weights"),
    "bf16-cl": Setup(True, True, True, False, "bf16 autocast, channels_last activations and weights"),
    "fp32-cl-compile": Setup(False, True, True, True, "fp32-cl under torch.compile (only with --compile)"),
    "bf16-cl-compile": Setup(True, True, True, True, "bf16-cl under torch.compile (only with --compile)"),
}
BASELINE = "fp32-nchw"


def training_step(device: str) -> str:
    """The configuration `train_model` runs with config.yaml's train.bf16 (auto) and train.compile (off)."""
    bf16 = config_io.resolve_bf16(config_io.load()["train"]["bf16"], device)
    return "bf16-clact" if bf16 else "fp32-clact"


class _TorchKeepingNCHW:
    """Stands in for `torch` inside models/blocks.py, whose FrameEncoder and FrameDecoder always call
    `.contiguous(memory_format=torch.channels_last)`: here that name means NCHW, so the baseline runs NCHW
    without an edit to the model code. Everything else is torch's own."""

    channels_last = torch.contiguous_format

    def __getattr__(self, name: str):
        return getattr(torch, name)


def row_config(config: dict, method: str) -> models.S3VAEConfig:
    """S3VAE row `method` of the resolved `config` on Sprites-shaped clips, built as `train_model` builds it
    but without label heads (random clips have no factors; the heads are a few linear layers)."""
    no_labels = ClipSet(frames=torch.empty(0), targets={}, factors=())
    attrs = {"name": "sprites", "modality": "video", "frame_shape": (T, SIZE, SIZE, CHANNELS)}
    settings = variant_settings(config["variants"][method])
    flow = {key: config["flow"][key] for key in ("grid", "direction_grid")}  # the label file's attributes
    inputs = ModelInputs(config["model"], settings, no_labels, attrs, flow)
    return models.S3VAEConfig(**s3vae_config(inputs))


def model_config(preset: str) -> tuple[models.S3VAEConfig, dict]:
    """S3VAE `full` at the preset's sizes and the resolved config."""
    config = config_io.load(overrides={"preset": preset})
    return row_config(config, "full"), config


def random_flow_labels(batch_size: int, topk: int, cells: int) -> dict[str, torch.Tensor]:
    """Random flow labels of both kinds over `cells` cells (the row's dfp_classes; it reads its own kind):
    the top-k cells (B, T, k) and each cell's direction bin or -1 (B, T, cells)."""
    top = torch.rand(batch_size, T, cells).argsort(dim=-1)[..., : min(topk, cells)].to(torch.int16)
    return {
        "flow_topk": top,
        "flow_direction": torch.randint(-1, 8, (batch_size, T, cells), dtype=torch.int8),
    }


def random_batch(batch_size: int, topk: int, classes: int, device: str) -> tuple[torch.Tensor, dict]:
    """Random uint8 clips made into model input as a training batch is, and random flow labels."""
    frames = torch.randint(0, 256, (batch_size, T, SIZE, SIZE, CHANNELS), dtype=torch.uint8)
    x = to_input(frames.to(device))  # (B, T, C, H, W)
    return x, {
        name: labels.to(device) for name, labels in random_flow_labels(batch_size, topk, classes).items()
    }


def count_flops(config: models.S3VAEConfig, batch_size: int, topk: int) -> int:
    """FLOPs of one forward + loss + backward pass, counted on the meta device (no computation)."""
    with torch.device("meta"):
        model = models.S3VAE(config)
        x = torch.rand(batch_size, T, CHANNELS, SIZE, SIZE)
        targets = random_flow_labels(batch_size, topk, config.dfp_classes)
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(x, model(x), targets, dataset_size=DATASET_SIZE)["loss"].backward()
    return counter.get_total_flops()


def matmul_roofline(device: str, threads: int | None, dtype: torch.dtype, size: int = 2048) -> float:
    """GFLOP/s of a large square matmul on `device` with `threads` threads: the practical peak that a
    training step's GFLOP/s is held against, measured in the same run (the CPU model varies between
    machines, and bf16 is fast only where it is native)."""
    if threads:
        torch.set_num_threads(threads)
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    times = []
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9


def training_step_fn(setup: Setup, *, config, lr: float, topk: int, device: str, batch_size: int):
    """One training step of S3VAE `full` on a fixed random batch, as `train_one_epoch` takes it; returns a
    function that runs a step and its wall time in seconds (synchronised on CUDA)."""
    model = models.S3VAE(config).to(device)
    if setup.channels_last_weights:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if setup.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, targets = random_batch(batch_size, topk, config.dfp_classes, device)
    cuda = device.startswith("cuda")

    def step() -> float:
        started = time.perf_counter()
        with autocast(device, setup.bf16):
            loss = step_model.loss(x, step_model(x), targets, dataset_size=DATASET_SIZE)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1e4)
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    return step


def _profiled(step, steps: int, rows: int, cuda: bool, about: str) -> list[float]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        times = [step() for _ in range(steps)]
    print(f"profile of {steps} training steps ({about}), operators by self time:")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows))
    return times


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux): afterwards getrusage's ru_maxrss is the peak since the reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def measure(
    setup: Setup,
    *,
    config: models.S3VAEConfig,
    lr: float,
    topk: int,
    device: str,
    threads: int | None,
    batch_size: int,
    steps: int,
    warmup: int,
    seed: int = 0,
    profile_rows: int | None = None,
) -> dict:
    """Time `steps` training steps after `warmup` ones in this process: times in s, memory in bytes. With
    `profile_rows`, the timed steps run under torch.profiler and its operators by self time are printed."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cuda = device.startswith("cuda")
    step = training_step_fn(setup, config=config, lr=lr, topk=topk, device=device, batch_size=batch_size)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        peak_is_reset = _reset_peak_rss()
        before = _peak_rss() if peak_is_reset else None
    saved_torch = blocks.torch
    if not setup.channels_last_activations:
        blocks.torch = _TorchKeepingNCHW()
    try:
        first = step()
        for _ in range(warmup - 1):
            step()
        if profile_rows:
            times = _profiled(step, steps, profile_rows, cuda, setup.about)
        else:
            times = [step() for _ in range(steps)]
    finally:
        blocks.torch = saved_torch
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss()
    return {
        "step_s": statistics.median(times),
        "first_s": first,
        "peak_bytes": peak,
        "added_bytes": None if before is None else peak - before,
    }


def train_rate(
    *,
    preset: str = "quick",
    device: str = "cpu",
    threads: int | None = 2,
    batch_size: int = 32,
    steps: int = 5,
    warmup: int = 2,
) -> float:
    """Sequences per second of the training step (`training_step`) at the preset's sizes, in this process."""
    config, resolved = model_config(preset)
    result = measure(
        SETUPS[training_step(device)],
        config=config,
        lr=resolved["train"]["lr"],
        topk=resolved["flow"]["topk"],
        device=device,
        threads=threads,
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
    )
    return batch_size / result["step_s"]


def _child(conn, name: str, kwargs: dict, caches: str) -> None:
    os.environ.update({key: str(Path(caches) / key) for key in COMPILE_CACHES})
    try:
        conn.send(("ok", measure(SETUPS[name], **kwargs)))
    except BaseException:  # noqa: B036 - the parent reports whatever ended the measurement
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def measure_in_child(name: str, kwargs: dict, timeout: float | None) -> tuple[str, dict | str]:
    """Run `measure` for one setup in a fresh (spawned) process with empty compile caches (so a compiled
    setup's first step holds a cold compilation), killed after `timeout` seconds."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    with tempfile.TemporaryDirectory() as caches:
        process = context.Process(target=_child, args=(sender, name, kwargs, caches))
        process.start()
        sender.close()
        try:
            if not receiver.poll(timeout):
                process.kill()
                return "timeout", f"stopped after {timeout:.0f} s"
            return receiver.recv()
        except EOFError:
            process.join()
            return "error", f"the process died with exit code {process.exitcode} (out of memory?)"
        finally:
            process.join()


def describe_device(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, bf16 supported: {torch.cuda.is_bf16_supported()}"
    name, flags = platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            name = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    native = sorted(flags & {"avx512_bf16", "amx_bf16"}) or ["none (bf16 is emulated)"]
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, native bf16: {', '.join(native)}"


def _print_setup(config: models.S3VAEConfig, flops: int, args, threads: int | None, roofs: dict) -> None:
    """The model, batch, device and threads measured, the FLOPs per step and the matmul rooflines."""
    c = config
    print(
        f"S3VAE full (scc {c.scc_weight:g}, dfp {c.dfp_weight:g}, mi {c.mi_weight:g}, "
        f"{c.dfp_classes} DFP classes), preset {args.preset}: convs {c.conv_channels}, D_h {c.frame_dim}, "
        f"hidden {c.hidden_dim}, D_f {c.static_dim}, D_z {c.dynamic_dim}"
    )
    shape = f"{args.batch_size} x {T} x {CHANNELS} x {SIZE} x {SIZE}"
    print(f"batch {shape}; {args.device}: {describe_device(args.device)}")
    print(
        f"torch {torch.__version__}, {threads or torch.get_num_threads()} threads; "
        f"median of {args.steps} steps after {args.warmup} warm-up; each configuration in a fresh process"
    )
    print(f"FLOPs per training step (forward + loss + backward): {flops / 1e9:.1f} GFLOP")
    memory = "peak CUDA memory allocated" if args.device == "cuda" else "peak RSS"
    print(f"memory: {memory}; '+MiB' is its rise over the state before the first step")
    print(
        "roofline (2048^3 matmul, same threads, this run): "
        + ", ".join(f"{name} {gflops:.0f} GFLOP/s" for name, gflops in roofs.items())
        + "; '% roof' holds each row against its numerics' roof\n"
    )


def report(
    results: dict, *, config: models.S3VAEConfig, flops: int, args, threads: int | None, roofs: dict
) -> None:
    """Print the set-up (`_print_setup`), one row per configuration, the legend and the target."""
    _print_setup(config, flops, args, threads, roofs)
    print(
        f"{'config':<17}{'seq/s':>8}{'ms/step':>10}{'GFLOP/s':>9}{'% roof':>8}{'1st step s':>12}"
        f"{'peak MiB':>10}{'+MiB':>8}{'speedup':>9}"
    )
    status, base = results[BASELINE]
    base_s = base["step_s"] if status == "ok" else None
    speedups = {}
    for name, (status, r) in results.items():
        if status != "ok":
            print(f"{name:<17}{status}: {r.strip().splitlines()[-1]}")
            continue
        step_s = r["step_s"]
        speedups[name] = base_s / step_s if base_s else None
        added = "-" if r["added_bytes"] is None else f"{r['added_bytes'] / 2**20:.0f}"
        speedup = f"{speedups[name]:.2f}x" if base_s else "-"
        roof = roofs["bf16" if SETUPS[name].bf16 else "fp32"]
        print(
            f"{name:<17}{args.batch_size / step_s:>8.1f}{1e3 * step_s:>10.0f}{flops / step_s / 1e9:>9.1f}"
            f"{100 * flops / step_s / 1e9 / roof:>7.0f}%{r['first_s']:>12.1f}{r['peak_bytes'] / 2**20:>10.0f}"
            f"{added:>8}{speedup:>9}"
        )
    print()
    for name in results:
        print(f"  {name:<17}{SETUPS[name].about}")
    print()
    step = training_step(args.device)
    if base_s and step in speedups:
        verdict = "met" if speedups[step] >= CPU_TARGET else "NOT met"
        where = "" if args.device == "cpu" else " (measured on CUDA; the target is set for the CPU)"
        print(
            f"target: the training step ({step}) at >= {CPU_TARGET}x the fp32 eager NCHW baseline "
            f"on the CPU: {verdict}, {speedups[step]:.2f}x{where}"
        )
    if base_s:
        best = max(speedups, key=speedups.get)
        print(f"fastest: {best}, {speedups[best]:.2f}x the baseline")
    for name, (status, r) in results.items():
        if SETUPS[name].compile and status == "ok":
            compiling = r["first_s"] - r["step_s"]
            print(f"{name}: first step {r['first_s']:.1f} s, about {compiling:.0f} s of it compilation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["paper", "quick"], default="paper", help="model sizes")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 2 on the CPU)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, the first timed apart")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--configs", default=None, help=f"comma-separated subset of {', '.join(SETUPS)}")
    parser.add_argument("--compile", action="store_true", help="add the *-compile setups (minutes on a CPU)")
    parser.add_argument("--compile-timeout", type=float, default=600, help="seconds a compiled run may take")
    parser.add_argument("--profile", action="store_true", help="also print the step's operators by self time")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    threads = args.threads or (2 if args.device == "cpu" else None)
    if args.configs:
        names = args.configs.split(",")
    else:
        names = [name for name, setup in SETUPS.items() if args.compile or not setup.compile]
    unknown = sorted(set(names) - set(SETUPS))
    if unknown:
        parser.error(f"--configs: unknown {unknown}; choose from {list(SETUPS)}")
    names = [BASELINE] + [name for name in names if name != BASELINE]

    config, resolved = model_config(args.preset)
    topk = resolved["flow"]["topk"]
    flops = count_flops(config, args.batch_size, topk)
    kwargs = {
        "config": config,
        "lr": resolved["train"]["lr"],
        "topk": topk,
        "device": args.device,
        "threads": threads,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    roofs = {
        "fp32": matmul_roofline(args.device, threads, torch.float32),
        "bf16": matmul_roofline(args.device, threads, torch.bfloat16),
    }
    results = {}
    for name in names:
        results[name] = measure_in_child(name, kwargs, args.compile_timeout if SETUPS[name].compile else None)
        print(f"  measured {name}: {results[name][0]}", file=sys.stderr, flush=True)
    report(results, config=config, flops=flops, args=args, threads=threads, roofs=roofs)
    if args.profile:
        print()
        measure(SETUPS[training_step(args.device)], **kwargs, profile_rows=15)


if __name__ == "__main__":
    main()
