"""The measuring half of benchmarks/gpu_paper_sprites.sh: `plan` times the rows' training and picks how many
epochs fit the run's budget; `report` adds what the workflow's run measured to its summary.

    python3 benchmarks/gpu_paper_sprites.py plan --out DIR --deadline UNIX_S --reserve-s S --cores N \\
        -- KEY=VALUE ...
    python3 benchmarks/gpu_paper_sprites.py report --out DIR -- KEY=VALUE ...

KEY=VALUE are the run's `snakemake --config` entries (YAML values), so both read config.yaml as the workflow
resolves it for the run. Both append what they print to DIR/summary.md.

`plan` runs after the script's first stage and reads its files (Sprites and its flow labels):
- the peak: a square matmul (8192^3 on CUDA, 2048^3 on the CPU) in the training step's numerics (bf16 where
  `train.bf16` resolves to it, else fp32), timed by bench_train.matmul_roofline in this process;
- the FLOPs of one training step (forward, loss, backward) of each row at `train.batch_size`, counted by
  bench_train.count_flops; FLOPs times steps per second over the peak is the step's share of the peak;
- each row alone: the workflow's own stage `train_model` on the run's data for CALIBRATION_EPOCHS epochs in
  a temporary folder. Its epoch is the time between two epoch log lines after the first (training, test
  loss, metrics, checkpoint), its set-up the time to the first line less one epoch (data, model, warm-up),
  its seq/s the loop's logged clips/s of the training part;
- the rows side by side: the same, one process per row, started together, each for as many epochs as the
  slowest row needs for CALIBRATION_EPOCHS; a row's epoch is timed while every row trains;
- the plan: the way (one row at a time, or side by side) that fits the most epochs of every row between
  now and the deadline less the reserve, at most `train.epochs`. DIR/plan.env holds the script's settings
  for it (EPOCHS, TRAIN, GPU_JOBS, SCORING_GPU, THREADS), DIR/calibration.json the measurements.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import queue
import re
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import bench_train  # noqa: E402  (this script's folder is first on sys.path)

from pipeline import config as config_io  # noqa: E402
from pipeline.stage import config_arguments, setup_logging  # noqa: E402
from pipeline.train.model import train_model  # noqa: E402

DATASET = "sprites"
DATA = f"results/data/{DATASET}.h5"
FLOW_LABELS = f"results/labels/{DATASET}/flow.h5"
TABLE = "results/tables/table1.md"
AUTHORS_EPOCHS = 300  # S3VAE's public code trains Sprites 300 epochs at batch 128 (about 21k steps)
CALIBRATION_EPOCHS = 3  # per row; the first is warm-up (allocations, kernel selection) and is not timed
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+: .* ([0-9.]+) clips/s")  # as pipeline.train.loop logs an epoch
TRAINING_LOGGER = "pipeline.train.loop"


def run_config(entries: list[str]) -> tuple[dict, dict]:
    """config.yaml resolved with the run's `--config` entries, and those entries as a dict."""
    overrides = {}
    for entry in entries:
        key, equals, value = entry.partition("=")
        if not equals:
            raise SystemExit(f"'{entry}' is not a --config entry: write KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return config_io.load("config.yaml", overrides), overrides


def summarise(out: Path, text: str) -> None:
    """Print `text` and append it to the run's summary (written stage by stage, so a cut run keeps it)."""
    print(text, flush=True)
    with open(out / "summary.md", "a") as summary:
        summary.write(text + "\n")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


# --- timing the workflow's training ------------------------------------------------------------------------
@dataclass(frozen=True)
class Training:
    """One run of `train_model`: when it was called, and the wall time (time.time, comparable between
    processes) and logged clips/s of each of its epoch lines."""

    started: float
    epochs: list[tuple[float, float]]

    def intervals(self, after: float = -math.inf, before: float = math.inf) -> list[float]:
        """Seconds between consecutive epoch lines, of the epochs that began after `after` and ended
        before `before`."""
        times = [t for t, _ in self.epochs]
        return [b - a for a, b in zip(times, times[1:], strict=False) if a >= after and b <= before]

    @property
    def epoch_s(self) -> float:
        return statistics.median(self.intervals())

    @property
    def setup_s(self) -> float:
        # a first epoch as quick as the median leaves the noise of the timing, not a negative set-up
        return max(self.epochs[0][0] - self.started - self.epoch_s, 0.0)

    @property
    def seq_s(self) -> float:
        return statistics.median(rate for _, rate in self.epochs[1:])


class EpochClock(logging.Handler):
    """Records the wall time and clips/s of each epoch line the training loop logs."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.epochs: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = EPOCH_LINE.search(record.getMessage())
        if line:
            self.epochs.append((time.time(), float(line[2])))


def train_row(config: dict, method: str, epochs: int, folder: Path) -> Training:
    """Run stage `train_model` as the rule runs it, for `epochs` epochs of row `method`, into `folder`."""
    clock = EpochClock()
    training_log = logging.getLogger(TRAINING_LOGGER)
    training_log.addHandler(clock)
    started = time.time()
    try:
        train_model(
            **{**config_arguments(train_model, config), "train": {**config["train"], "epochs": epochs}},
            dataset=DATA,
            labels=FLOW_LABELS,
            variant=config["variants"][method],
            output=str(folder / method / "model.pt"),
        )
    finally:
        training_log.removeHandler(clock)
    if len(clock.epochs) != epochs:
        raise RuntimeError(f"{method}: {len(clock.epochs)} epoch lines from {TRAINING_LOGGER}, not {epochs}")
    return Training(started, clock.epochs)


def _train_row_in_child(config, method, epochs, folder, threads, start, results) -> None:
    setup_logging()  # a spawned process starts without the parent's logging
    torch.set_num_threads(threads)
    try:
        start.wait()
        results.put((method, train_row(config, method, epochs, folder)))
    except BaseException:  # noqa: B036 - the parent reports whatever ended the row
        results.put((method, traceback.format_exc()))


def train_side_by_side(
    config: dict, epochs: dict[str, int], folder: Path, threads: int, timeout_s: float
) -> dict[str, Training]:
    """`train_row` of every row at once, one spawned process each, released together by a barrier."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(len(epochs), timeout=timeout_s), context.Queue()
    processes = [
        context.Process(target=_train_row_in_child, args=(config, m, n, folder, threads, start, results))
        for m, n in epochs.items()
    ]
    for process in processes:
        process.start()
    trainings = {}
    try:
        for _ in processes:
            method, training = results.get(timeout=timeout_s)
            if isinstance(training, str):
                print(training, file=sys.stderr)
                raise RuntimeError(f"{method} failed beside the other rows (its traceback is above)")
            trainings[method] = training
    except queue.Empty:
        raise RuntimeError(f"the rows trained side by side did not finish within {timeout_s:.0f} s") from None
    finally:
        for process in processes:
            process.kill()
            process.join()
    return trainings


def side_by_side_epoch_s(trainings: dict[str, Training]) -> dict[str, float] | None:
    """Each row's median epoch while every row trained (after every row's first epoch, before the first
    row finished); None if a row had no such epoch."""
    everyone_warm = max(t.epochs[0][0] for t in trainings.values())
    first_done = min(t.epochs[-1][0] for t in trainings.values())
    inside = {m: t.intervals(after=everyone_warm, before=first_done) for m, t in trainings.items()}
    return {m: statistics.median(s) for m, s in inside.items()} if all(inside.values()) else None


# --- the plan ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Way:
    """A way to train every row: its fixed set-up seconds, then seconds per epoch of every row."""

    name: str
    setup_s: float
    epoch_s: float

    def epochs_within(self, budget_s: float, max_epochs: int) -> int:
        """As many epochs as fit in `budget_s`, at least 1 and at most `max_epochs`."""
        return max(1, min(max_epochs, math.floor((budget_s - self.setup_s) / self.epoch_s)))

    def seconds(self, epochs: int) -> float:
        return self.setup_s + epochs * self.epoch_s


def one_at_a_time(alone: dict[str, Training]) -> Way:
    return Way(
        "one at a time", sum(t.setup_s for t in alone.values()), sum(t.epoch_s for t in alone.values())
    )


def side_by_side(alone: dict[str, Training], together_epoch_s: dict[str, float]) -> Way:
    """The rows side by side: the longest set-up, then the longest epoch of the rows trained together (the
    others finish first and leave it the GPU, so this bounds the time from above)."""
    return Way("side by side", max(t.setup_s for t in alone.values()), max(together_epoch_s.values()))


def choose(ways: list[Way], budget_s: float, max_epochs: int) -> tuple[Way, int]:
    """The way that fits the most epochs in `budget_s`, the quicker one where they tie, and its epochs."""
    return max(
        ((way, way.epochs_within(budget_s, max_epochs)) for way in ways),
        key=lambda chosen: (chosen[1], -chosen[0].seconds(chosen[1])),
    )


# --- plan: calibrate, choose, write ------------------------------------------------------------------------
def calibrate(config: dict, threads: int, deadline: float) -> tuple[dict, dict | None, str]:
    """Each row trained alone, then side by side, and how that went: its epochs per row (`None` where it
    failed or no epoch ran while every row trained; the run then trains one row at a time)."""
    rows = config["methods"]
    with tempfile.TemporaryDirectory() as folder:
        alone = {m: train_row(config, m, CALIBRATION_EPOCHS, Path(folder) / "alone") for m in rows}
        slowest = max(t.epoch_s for t in alone.values())
        epochs = {m: 1 + math.ceil((CALIBRATION_EPOCHS - 1) * slowest / t.epoch_s) for m, t in alone.items()}
        about = ", ".join(f"{m} {n}" for m, n in epochs.items()) + " epochs"
        # Side by side cannot win where it takes twice what these epochs take one at a time (a minute more
        # for the processes to start): stop it there, and never past the deadline.
        one_by_one_s = sum(t.setup_s + epochs[m] * t.epoch_s for m, t in alone.items())
        timeout_s = min(60 + 2 * one_by_one_s, max(deadline - time.time(), 0))
        try:
            together = train_side_by_side(config, epochs, Path(folder) / "together", threads, timeout_s)
        except RuntimeError as error:
            return alone, None, f"{about}, not measured: {error}"
    epoch_s = side_by_side_epoch_s(together)
    return alone, epoch_s, about if epoch_s else f"{about}, none while every row trained"


def peak_of(device: str, bf16: bool, threads: int) -> tuple[float, str]:
    """GFLOP/s of a square matmul in the training step's numerics, this run, and what was timed."""
    size = 8192 if device == "cuda" else 2048  # a CPU takes seconds for one 8192^3 product (1.1 TFLOP)
    peak = bench_train.matmul_roofline(device, threads, torch.bfloat16 if bf16 else torch.float32, size)
    return peak, f"{size}^3 {'bf16' if bf16 else 'fp32'} matmul"


def describe(config, device, peak, about_peak, flops, alone, together_s, about_together) -> str:
    """The calibration as Markdown: the device and peak, and per row its step and epoch."""
    batch = config["train"]["batch_size"]
    rows = [
        [
            m,
            f"{flops[m] / 1e9:.3g}",
            f"{t.seq_s:.0f}",
            f"{100 * flops[m] / batch * t.seq_s / (peak * 1e9):.1f}",
            f"{t.setup_s:.1f}",
            f"{t.epoch_s:.2f}",
            "-" if together_s is None else f"{together_s[m]:.2f}",
        ]
        for m, t in alone.items()
    ]
    header = ["row", "GFLOP / step", "seq/s", "% of peak", "set-up s", "s / epoch", "s / epoch side by side"]
    return (
        f"\n## Calibration: the workflow's train_model, {CALIBRATION_EPOCHS} epochs of each row on the run's "
        f"data\n\n{device}: {bench_train.describe_device(device)}; torch {torch.__version__}; batch {batch}; "
        f"peak {peak / 1e3:.3g} TFLOP/s ({about_peak}, this run). Per row alone: FLOPs of a training step "
        "(forward, loss, backward), seq/s of the training part of an epoch and its share of the peak, the "
        "time to the first epoch less one epoch (data, model, warm-up), an epoch (training, test loss, "
        f"metrics, checkpoint) after the first; then side by side ({about_together}).\n\n"
        + markdown_table(header, rows)
    )


def describe_choice(
    ways: list[Way], way: Way, epochs: int, budget_s: float, reserve_s: float, cap: int
) -> str:
    costs = "; ".join(
        f"{w.name}: set-up {w.setup_s:.0f} s, then {w.epoch_s:.2f} s an epoch of every row" for w in ways
    )
    lines = [
        f"\n{costs}",
        f"training budget: {budget_s:.0f} s (to the deadline, less {reserve_s:.0f} s for scoring, "
        "diagnostics and the table)",
        f"epochs: {epochs} (the authors trained {AUTHORS_EPOCHS}; at most train.epochs, {cap}), {way.name}, "
        f"planned training {way.seconds(epochs):.0f} s",
    ]
    if way.seconds(epochs) > budget_s:
        lines.append("WARNING: not one epoch fits the budget: the run will take longer")
    return "\n".join(lines)


def plan(args) -> None:
    """Calibrate and choose (module doc); write plan.env and calibration.json to args.out."""
    setup_logging()
    out = Path(args.out)
    config, overrides = run_config(args.settings)
    device = config_io.resolve_device(config["device"])
    rows, batch, topk = config["methods"], config["train"]["batch_size"], config["flow"]["topk"]
    threads = max(1, args.cores // len(rows))  # the jobs' threads when every row trains side by side
    torch.set_num_threads(threads)
    peak, about_peak = peak_of(device, config_io.resolve_bf16(config["train"]["bf16"], device), threads)
    flops = {m: bench_train.count_flops(bench_train.row_config(config, m), batch, topk) for m in rows}
    alone, together_s, about_together = calibrate(config, threads, args.deadline)
    summarise(out, describe(config, device, peak, about_peak, flops, alone, together_s, about_together))

    ways = [one_at_a_time(alone)] + ([side_by_side(alone, together_s)] if together_s else [])
    budget_s = args.deadline - time.time() - args.reserve_s
    cap = config["train"]["epochs"]
    way, epochs = choose(ways, budget_s, cap)
    summarise(out, describe_choice(ways, way, epochs, budget_s, args.reserve_s, cap))
    train = yaml.safe_dump({**overrides.get("train", {}), "epochs": epochs}, default_flow_style=True).strip()
    settings = {
        "EPOCHS": epochs,
        "TRAIN": train,
        "GPU_JOBS": len(rows) if way.name == "side by side" else 1,
        "SCORING_GPU": 0 if together_s else 1,  # 0: scoring runs beside trainings, as the rows did here
        "THREADS": threads,
    }
    (out / "plan.env").write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in settings.items()))
    measured = {
        "device": bench_train.describe_device(device),
        "torch": torch.__version__,
        "peak_gflops": peak,
        "peak_of": about_peak,
        "batch_size": batch,
        "flops_per_step": flops,
        "alone": {m: asdict(t) for m, t in alone.items()},
        "side_by_side_epoch_s": together_s,
        "ways": [asdict(w) for w in ways],
        "chosen": {"way": way.name, "epochs": epochs, "budget_s": budget_s},
    }
    (out / "calibration.json").write_text(json.dumps(measured, indent=2))


# --- report ------------------------------------------------------------------------------------------------
def logged_rates(log: Path) -> list[float]:
    """The clips/s of each epoch line of a training job's log."""
    return [float(line[2]) for line in EPOCH_LINE.finditer(log.read_text())] if log.exists() else []


def job_seconds(benchmark: Path) -> float:
    """The wall time of a job, from the file its rule's `benchmark:` wrote."""
    return float(pd.read_csv(benchmark, sep="\t")["s"].iloc[-1])


def report(args) -> None:
    """Each training's seq/s and share of the peak in the workflow, each job's time and Table 1 (with its
    probes), appended to the summary."""
    out = Path(args.out)
    config, _ = run_config(args.settings)
    measured = json.loads((out / "calibration.json").read_text())
    batch, peak = measured["batch_size"], measured["peak_gflops"]
    rows = []
    for method in config["methods"]:
        rates = logged_rates(Path(f"logs/train_model/{DATASET}_{method}_seed0.log"))
        if not rates:
            rows.append([method, 0, "no epoch logged", "-"])
            continue
        steady = statistics.median(rates[1:] or rates)
        share = measured["flops_per_step"][method] / batch * steady / (peak * 1e9)
        rows.append([method, len(rates), f"{steady:.0f}", f"{100 * share:.1f}"])
    jobs = [
        [f"{b.parent.name} {b.stem}", f"{job_seconds(b):.1f}"]
        for b in sorted(Path("benchmarks").glob("*/*.tsv"))
    ]
    table = Path(TABLE)
    summarise(
        out,
        "\n## Training in the workflow (logs/train_model/: median clips/s after the first epoch)\n\n"
        + markdown_table(["row", "epochs", "seq/s", "% of peak"], rows)
        + "\n\n## Jobs (Snakemake's benchmarks/<rule>/: seconds)\n\n"
        + markdown_table(["job", "s"], jobs)
        + f"\n\n## {TABLE}\n\n"
        + (table.read_text() if table.exists() else f"{TABLE} was not written: see log.txt"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, about in (("plan", "calibrate and plan the epochs"), ("report", "summarise the run")):
        command = commands.add_parser(name, help=about)
        command.add_argument("--out", required=True, help="the run's output folder (summary.md, ...)")
        command.add_argument("settings", nargs="*", help="the run's snakemake --config entries, KEY=VALUE")
        command.set_defaults(run=plan if name == "plan" else report)
    plan_command = commands.choices["plan"]
    plan_command.add_argument("--deadline", type=float, required=True, help="when the run must end (Unix s)")
    plan_command.add_argument("--reserve-s", type=float, required=True, help="seconds kept after training")
    plan_command.add_argument("--cores", type=int, required=True, help="the run's snakemake --cores")
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
