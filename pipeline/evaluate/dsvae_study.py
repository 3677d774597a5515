"""Stages `make_dsvae_table1` and `evaluate_dynamics`: DSVAE's own experiments (Li & Mandt, ICML 2018).

DSVAE Table 1 (Sprites), per judge head a (a factor, or an order-free group of factors). The judge reads
the real test clips x and clips generated from them; p(y|x) is its class distribution, its prediction the
multiset nearest p(y|x) (pipeline/evaluate/heads.py: a single factor's argmax). As DSVAE section 4.1 defines
them, on pairs of a real clip and its generation:
- Generation "recon": a static head's row keeps f (posterior mean of x) and draws z_1:T from the learned
  prior (evaluate.regenerate "fixed_static"); a dynamic head's row (the action) keeps z_1:T and draws
  f ~ p(f) ("fixed_dynamics").
- `disagreement`: the fraction of clips whose prediction of head a on the generation differs from its
  prediction on the real clip (the judge on data against the judge on generated frames, not against the
  ground truth: the judge's own errors cancel).
- `KL(p_recon||p_data)`: the mean over clips of KL(p_recon || p_data) between the judge's distributions on
  the generation and on its real clip (`pipeline.evaluate.metrics.mean_kl`).
- `KL(p_random||p_data)`: the mean over clips of KL(uniform || p_data), the paper's reference level (a
  judge output that says nothing); it depends on the judge and the data, not on the model.
Each row is the mean and std over `evaluate.repeats` draws, `n` test clips each; the published Table 1
(`workflow/published/dsvae_table1.csv`) is printed beside ours.

Stochastic vs deterministic dynamics (DSVAE section 4.3, Fig. 8) on the bouncing-ball dataset: for each
model (the stochastic z_t, LSTM-f, LSTM-c) and each number k = 0 .. T-1 of consecutive missing frames at
the end of a test clip, the model sees the first t = T - k frames and predicts the rest
(`models.dsvae.DSVAE.impute`; k = 0 is reconstruction). `wrong_pixels` is the fraction of pixels of the
whole clip, observed and predicted frames alike, that the binarised output gets wrong
(`pipeline.evaluate.metrics.wrong_pixels`), over the test split.
"""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from pipeline.config import FromConfig, resolve_bf16, resolve_device  # noqa: E402
from pipeline.data.clips import load_clips  # noqa: E402
from pipeline.data.factors import JudgeHead, judge_heads  # noqa: E402
from pipeline.data.h5io import read_attrs  # noqa: E402
from pipeline.evaluate import heads, metrics  # noqa: E402
from pipeline.evaluate.table1 import judge_generations, posterior_means  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402
from pipeline.report.figures import save_figure  # noqa: E402
from pipeline.report.tables import markdown_dsvae_table1, over_seeds, write_markdown  # noqa: E402
from pipeline.train.checkpoint import load_model  # noqa: E402
from pipeline.train.loop import autocast  # noqa: E402

logger = logging.getLogger(__name__)

TABLE1_COLUMNS = [
    "dataset",
    "method",
    "attribute",
    "kind",
    "metric",
    "value",
    "std",
    "seeds",
    "std_repeats",
    "n",
]
DYNAMICS_COLUMNS = [
    "dataset",
    "method",
    "task",
    "missing_frames",
    "observed_frames",
    "wrong_pixels",
    "std",
    "seeds",
    "n",
]
_RECON = {"static": "fixed_static", "dynamic": "fixed_dynamics"}  # what a head's "recon" generation keeps


def table1_scores(
    data_probs: dict[str, np.ndarray],
    recon_probs: dict[str, dict[str, np.ndarray]],
    judge_heads: list[JudgeHead],
) -> dict[tuple[str, str], float]:
    """One repeat of DSVAE Table 1 from judge outputs p(y|x) (N, K) per head: on the real clips and on the
    "recon" generations of each direction ({direction: {head: ...}}). Returns {(head, metric): value}."""
    scores = {}
    for head in judge_heads:
        recon, data = recon_probs[_RECON[head.kind]][head.name], data_probs[head.name]
        same = (heads.predict(head, recon) == heads.predict(head, data)).all(axis=1)
        scores[head.name, "disagreement"] = float(1.0 - same.mean())
        scores[head.name, "KL(p_recon||p_data)"] = metrics.mean_kl(recon, data)
        uniform = np.full((1, head.n_classes), 1.0 / head.n_classes)
        scores[head.name, "KL(p_random||p_data)"] = metrics.mean_kl(
            np.broadcast_to(uniform, data.shape), data
        )
    return scores


@torch.no_grad()
def judge_clips(judge, data, *, batch_size: int, device: str, bf16: bool) -> dict[str, np.ndarray]:
    """The judge's p(y|x) of every head on the real clips of `data`: {head: (N, K)}."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in judge.config.heads}
    for x, _ in data.batches(batch_size, shuffle=False, device=device):
        with autocast(device, bf16):
            for name, p in heads.probabilities(judge(x)).items():
                chunks[name].append(p)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def model_table1_rows(
    net, judge_net, data, data_probs, *, repeats: int, seed: int, batch: dict
) -> list[dict]:
    """DSVAE Table 1 rows of one model: every head's metrics, mean and std over `repeats` generations (repeat
    r seeded from seed * 1000 + r); `batch` holds batch_size, device and bf16."""
    means = posterior_means(net, data, **batch)
    dataset_heads = judge_heads(data.factors)
    runs = []
    for repeat in range(repeats):
        torch.manual_seed(seed * 1000 + repeat)
        recon = {
            keep: judge_generations(net, judge_net, means, keep=keep, **batch) for keep in _RECON.values()
        }
        runs.append(table1_scores(data_probs, recon, dataset_heads))
    kinds = {h.name: h.kind for h in dataset_heads}
    return [
        {"attribute": head, "kind": kinds[head], "metric": metric, "value": mean, "std": std, "n": len(data)}
        for (head, metric), (mean, std) in metrics.mean_std(runs).items()
    ]


def make_dsvae_table1(
    *,
    models: list[str],
    methods: list[str],
    seeds: list[int],
    judge: str,
    dataset: str,
    output: str,
    output_md: str,
    output_html: str | None = None,
    published: str | None = None,
    evaluate: dict = FromConfig("evaluate"),
    bf16: bool | str = FromConfig("train.bf16"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """DSVAE Table 1 (module docstring) of each model (`methods` and `seeds` name their row and training
    seed, in order) on `dataset`'s test split; tidy rows (TABLE1_COLUMNS, mean and std over the training
    seeds of each row, then the `published` rows labelled as such) to `output`, one grid per method to the
    Markdown `output_md`."""
    device = resolve_device(device)
    batch = {"batch_size": evaluate["batch_size"], "device": device, "bf16": resolve_bf16(bf16, device)}
    data = load_clips(dataset, "test", limit=evaluate["max_sequences"])
    judge_net = load_model(judge, device)
    data_probs = judge_clips(judge_net, data, **batch)
    name = str(read_attrs(dataset)["name"])
    rows = []
    for method, training_seed, path in zip(methods, seeds, models, strict=True):
        net = load_model(path, device)
        model_rows = model_table1_rows(
            net,
            judge_net,
            data,
            data_probs,
            repeats=evaluate["repeats"],
            seed=seed + training_seed,
            batch=batch,
        )
        logger.info(
            "%s seed %d: %s",
            method,
            training_seed,
            {f"{r['attribute']}/{r['metric']}": round(r["value"], 4) for r in model_rows},
        )
        rows += [{"dataset": name, "method": method, **row} for row in model_rows]
    keys = ["dataset", "method", "attribute", "kind", "metric"]
    table = over_seeds(pd.DataFrame(rows), keys).reindex(columns=TABLE1_COLUMNS + ["source"])
    table["source"] = "seqdis"
    if published is not None:
        reference = pd.read_csv(published)
        reference = reference.assign(method="published: " + reference["method"])
        table = pd.concat([table, reference.reindex(columns=table.columns)], ignore_index=True)
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    write_markdown(markdown_dsvae_table1(table), output_md, output_html)


@torch.no_grad()
def imputation_errors(net, data, *, batch_size: int, device: str) -> dict[int, float]:
    """{k: wrong-pixel fraction} for k = 0 .. T-1 consecutive missing frames at the end of each clip."""
    T = data.frames.shape[1]
    wrong = dict.fromkeys(range(T), 0.0)
    for x, _ in data.batches(batch_size, shuffle=False, device=device):
        for missing in range(T):
            predicted = net.impute(x, observed_steps=T - missing)
            wrong[missing] += metrics.wrong_pixels(predicted.float().cpu().numpy(), x.cpu().numpy()) * len(x)
    return {missing: total / len(data) for missing, total in wrong.items()}


def evaluate_dynamics(
    *,
    models: list[str],
    methods: list[str],
    seeds: list[int],
    dataset: str,
    output_csv: str,
    output_png: str,
    evaluate: dict = FromConfig("evaluate"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """DSVAE Fig. 8 (module docstring): wrong pixels against missing frames per model (`methods` and
    `seeds` name each model's row and training seed), mean and std over the seeds, as CSV and a plot."""
    device = resolve_device(device)
    torch.manual_seed(seed)
    data = load_clips(dataset, "test", limit=evaluate["max_sequences"])
    T = data.frames.shape[1]
    name = str(read_attrs(dataset)["name"])
    rows = []
    for method, training_seed, path in zip(methods, seeds, models, strict=True):
        errors = imputation_errors(
            load_model(path, device), data, batch_size=evaluate["batch_size"], device=device
        )
        logger.info(
            "%s seed %d: reconstruction %.4f, %d missing %.4f",
            method,
            training_seed,
            errors[0],
            T - 1,
            errors[T - 1],
        )
        rows += [
            {
                "dataset": name,
                "method": method,
                "task": "imputation" if k else "reconstruction",
                "missing_frames": k,
                "observed_frames": T - k,
                "value": value,
                "n": len(data),
            }
            for k, value in errors.items()
        ]
    keys = ["dataset", "method", "task", "missing_frames", "observed_frames"]
    table = over_seeds(pd.DataFrame(rows), keys).rename(columns={"value": "wrong_pixels"})
    table = table.reindex(columns=DYNAMICS_COLUMNS)
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    # A model that draws no ball at all gets the ball's share of the pixels wrong at every k: the level a
    # model must stay under to have learnt anything, and which a wrongly placed ball (twice its area) exceeds.
    blank = metrics.wrong_pixels(np.zeros(data.frames.shape), data.frames.numpy() / 255.0)
    logger.info("blank frames (no ball): %.4f wrong pixels", blank)
    plot_dynamics(table, blank, T, output_png)


def plot_dynamics(table: pd.DataFrame, blank: float, T: int, path: str) -> None:
    """Wrong pixels against missing frames, a line (mean) and band (seed std) per model, the blank level."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    for method, part_rows in table.groupby("method", sort=False):
        k, mean = part_rows["missing_frames"], part_rows["wrong_pixels"]
        seeds_of_row = int(part_rows["seeds"].iloc[0])
        (line,) = ax.plot(k, mean, marker="o", markersize=3, label=f"{method} ({seeds_of_row} seeds)")
        spread = part_rows["std"].fillna(0.0)
        ax.fill_between(k, mean - spread, mean + spread, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(blank, color="gray", linestyle="--", linewidth=1, label="blank frames (no ball)")
    ax.set_xlabel(f"consecutive missing frames (of {T}; 0 = reconstruction)")
    ax.set_ylabel("fraction of wrong pixels")
    ax.set_title("DSVAE Fig. 8: stochastic vs deterministic dynamics (bouncing balls)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(make_dsvae_table1, evaluate_dynamics)
