"""What a training budget buys: Table 1 Acc in both directions against training epochs, per row.

    python benchmarks/quality_curve.py                                   # Sprites, quick preset
    python benchmarks/quality_curve.py --methods baseline,full --epochs 1,2,4,8 --seeds 2
    python benchmarks/quality_curve.py --preset smoke --dataset dsprites --epochs 1,2   # a test-sized run
    python benchmarks/quality_curve.py --configfile benchmarks/recipe_changes.yaml --methods ... --diagnose

Each row trains once per seed for the largest epoch count, through `pipeline.train.loop.fit` at the preset's
sizes, and scored by the workflow's judge with `pipeline.evaluate.table1.table1_runs` after each listed epoch.
With `train.lr_schedule: constant` (the presets' setting) the model after k epochs is exactly the one a
k-epoch run trains (each epoch is seeded from the seed and its number), so one run gives the whole curve;
with a cosine schedule it is not, and the script says so. Writes `quality_curve.csv` and `.png` to
`--output` and prints the table. It reads the dataset, its flow labels and its judge from `results/`: build
them first with `snakemake --cores 2 results/judges/DATASET/judge.pt results/labels/DATASET/flow.h5
--config preset=PRESET mirror=...` (the script names the command when they are missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load, merge  # noqa: E402
from pipeline.data import h5io  # noqa: E402
from pipeline.data.clips import load_clips  # noqa: E402
from pipeline.evaluate.diagnostics import diagnose_model  # noqa: E402
from pipeline.evaluate.table1 import table1_runs  # noqa: E402
from pipeline.train.checkpoint import load_model, save_model  # noqa: E402
from pipeline.train.families import ModelInputs, family, variant_family, variant_settings  # noqa: E402
from pipeline.train.loop import fit  # noqa: E402
from pipeline.train.model import row_settings, vae_loss_fn  # noqa: E402

COLUMNS = ["dataset", "method", "seed", "epochs", "metric", "value", "seconds"]
CURVE_METRICS = ("Acc", "Acc/fixed_dynamics", "Acc/fixed_static")


def required_files(results: Path, dataset: str) -> dict[str, Path]:
    return {
        "dataset": results / f"data/{dataset}.h5",
        "labels": results / f"labels/{dataset}/flow.h5",
        "judge": results / f"judges/{dataset}/judge.pt",
    }


def diagnose(config: dict, method: str, seed: int, model, files: dict[str, Path], run_dir: Path) -> None:
    """The workflow's diagnostics (diagnose_model: ceiling, swap, probes, loss terms) of the trained model,
    written beside its run as {method}_seed{seed}_diagnostics.csv and _probes.png, and printed."""
    path = run_dir / f"{method}_seed{seed}" / "model.pt"
    save_model(path, variant_family(config["variants"][method]), model)
    diagnose_model(
        model=str(path),
        judge=str(files["judge"]),
        dataset=str(files["dataset"]),
        output_csv=str(run_dir.parent / f"{method}_seed{seed}_diagnostics.csv"),
        output_png=str(run_dir.parent / f"{method}_seed{seed}_probes.png"),
        method=method,
        training_seed=seed,
        evaluate=config["evaluate"],
        bf16=config["train"]["bf16"],
        seed=config["seed"],
        device=config["device"],
    )
    terms = pd.read_csv(run_dir.parent / f"{method}_seed{seed}_diagnostics.csv").fillna({"latent": ""})
    table = terms[terms["diagnostic"] != "loss"].pivot_table(
        index=["diagnostic", "latent"], columns="factor", values="value", sort=False
    )
    print(f"{method} seed {seed}, diagnostics of the last epoch:\n{table.round(2).to_string()}", flush=True)


def curve_of(config: dict, method: str, seed: int, files: dict[str, Path], epochs: list[int], run_dir: Path):
    """Train `method` with training seed `seed` for max(epochs) epochs (its row's own learning rate and
    batch size where its variant sets them); score it after each listed epoch."""
    torch.manual_seed(config["seed"] + seed)
    variant = config["variants"][method]
    chosen = family(variant_family(variant))
    labels = str(files["labels"]) if "flow" in chosen.labels else None
    train_set = load_clips(files["dataset"], "train", labels=labels, limit=config["train"]["max_sequences"])
    test_set = load_clips(files["dataset"], "test", labels=labels, limit=config["evaluate"]["max_sequences"])
    attrs = h5io.read_attrs(files["dataset"])
    label_attrs = h5io.read_attrs(labels) if labels else {}
    model = chosen.build(
        ModelInputs(config["model"], variant_settings(variant), train_set, attrs, label_attrs)
    )
    train = row_settings(variant, config["train"], seed=config["seed"] + seed, device=config["device"])
    settings = dataclasses.replace(train, epochs=max(epochs))
    judge = load_model(files["judge"], settings.device)
    protocol = h5io.read_protocol(files["dataset"])
    rows, started = [], time.perf_counter()

    def score(done: int) -> None:
        if done not in epochs:
            return
        model.eval()
        runs = table1_runs(
            model,
            judge,
            test_set,
            protocol,
            evaluate=config["evaluate"],
            device=settings.device,
            bf16=settings.bf16,
            seed=config["seed"] + seed,
        )
        model.train()
        seconds = time.perf_counter() - started
        for metric in CURVE_METRICS:
            if metric in runs[0]:
                value = float(np.mean([r[metric] for r in runs]))
                rows.append([attrs["name"], method, seed, done, metric, value, seconds])
        acc = np.mean([r["Acc"] for r in runs])
        print(f"{method} seed {seed}, {done} epochs ({seconds:.0f} s): Acc {acc:.3f}", flush=True)

    fit(
        model=model,
        loss_fn=vae_loss_fn(train_set),
        train_set=train_set,
        test_set=test_set,
        settings=settings,
        run_dir=run_dir / f"{method}_seed{seed}" / "run",  # the workflow's layout: model.pt beside run/
        run_config={"method": method, "seed": seed, "epochs": max(epochs), "model": repr(model.config)},
        inputs={"dataset": files["dataset"], "labels": labels},
        after_epoch=score,
    )
    return rows, model


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=110, sharey=True)
    for ax, metric in zip(axes, CURVE_METRICS, strict=True):
        part = table[table["metric"] == metric]
        for method, rows in part.groupby("method", sort=False):
            stats = rows.groupby("epochs")["value"].agg(["mean", "std"]).reset_index()
            (line,) = ax.plot(stats["epochs"], stats["mean"], marker="o", label=method)
            spread = stats["std"].fillna(0.0)
            ax.fill_between(
                stats["epochs"],
                stats["mean"] - spread,
                stats["mean"] + spread,
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training epochs")
        ax.set_title(metric, fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("judge accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(table: pd.DataFrame, output: Path, title: str) -> None:
    """Write the curve's CSV and plot to `output` and print it as a table."""
    table.to_csv(output / "quality_curve.csv", index=False)
    plot(table, output / "quality_curve.png", f"{title}: Acc against training epochs")
    summary = table.pivot_table(index=["method", "epochs"], columns="metric", values="value", aggfunc="mean")
    print(summary.round(3).to_string())
    print(f"wrote {output / 'quality_curve.csv'} and {output / 'quality_curve.png'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", help="the sizes to train at (workflow/presets)")
    parser.add_argument("--dataset", default="sprites", help="a dataset built by the workflow")
    parser.add_argument("--methods", default="baseline,full,full_swap", help="rows of config variants")
    parser.add_argument("--epochs", default="1,2,4,8,16", help="epoch counts to score at")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configfile", default=None, help="YAML merged over the preset (e.g. more variants)")
    parser.add_argument(
        "--diagnose", action="store_true", help="also write the diagnostics of the last epoch"
    )
    parser.add_argument("--results", default=str(ROOT / "results"), help="the workflow's results folder")
    parser.add_argument("--output", default=str(ROOT / "results/benchmarks/quality_curve"))
    parser.add_argument(
        "--combine", nargs="+", default=None, metavar="CSV", help="plot these curves together, train nothing"
    )
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.combine:  # curves trained in separate processes (one core each), drawn as one figure
        table = pd.concat([pd.read_csv(path) for path in args.combine], ignore_index=True)
        return report(table, output, str(table["dataset"].iloc[0]))
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    extra = yaml.safe_load(Path(args.configfile).read_text()) if args.configfile else {}
    config = load(overrides=merge(extra, {"preset": args.preset}))
    files = required_files(Path(args.results), args.dataset)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: build them first with `snakemake --cores 2 "
            f"results/judges/{args.dataset}/judge.pt results/labels/{args.dataset}/flow.h5 "
            f"--config preset={args.preset} mirror=../shared/data`"
        )
    if config["train"]["lr_schedule"] != "constant":
        print("note: train.lr_schedule is not constant: the point at k epochs is not a k-epoch training")
    epochs = sorted({int(e) for e in args.epochs.split(",")})
    rows = []
    for method in args.methods.split(","):
        for seed in range(args.seeds):
            curve, model = curve_of(config, method, seed, files, epochs, output / "runs")
            rows += curve
            report(pd.DataFrame(rows, columns=COLUMNS), output, f"{args.dataset}, preset {args.preset}")
            if args.diagnose:
                diagnose(config, method, seed, model, files, output / "runs")


if __name__ == "__main__":
    main()
