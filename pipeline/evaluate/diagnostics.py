"""Stage `diagnose_model`: where each factor lives in a trained model, and what each loss term weighed.

A Table 1 number can be low because the decoder cannot draw a factor at all, because the factor sits in the
wrong latent, or because a regulariser never acted. One file per trained model tells which, written beside
its metrics (`results/metrics/{dataset}/{method}/seed{k}_diagnostics.csv`, rows of `COLUMNS`):

- `ceiling`: the judge on reconstructions from both posterior means, no latent drawn from a prior. Every
  head's accuracy here caps what either direction of Table 1 can reach.
- `swap`: z_f of clip A with z_1:T of clip B (B a fixed permutation of the test clips): the static heads
  scored against A's labels, the dynamic heads against B's. A factor that follows the wrong latent fails.
- `probe`: a linear classifier (logistic regression, sklearn) per judge head and latent, fitted on the
  posterior means of training clips and scored on the test clips: the factor x latent accuracy matrix
  ("where does each factor live"; z_1:T is flattened over time). An order-free group (SMMNIST's digit pair)
  is probed as one class per multiset.
- `loss`: every term of the objective averaged over the last training epoch (`run/metrics.csv`), so a term
  that no longer moves the model (a satisfied triplet loss, a saturated MI estimate) shows.

The probe matrix is also drawn as a heat map (`seed{k}_probes.png`). Models without an encoder (MoCoGAN)
have no posterior and no diagnostics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from pipeline.config import FromConfig, resolve_bf16, resolve_device  # noqa: E402
from pipeline.data.clips import ClipSet, load_clips  # noqa: E402
from pipeline.data.factors import JudgeHead, judge_heads  # noqa: E402
from pipeline.data.h5io import read_attrs  # noqa: E402
from pipeline.evaluate import heads  # noqa: E402
from pipeline.evaluate.table1 import posterior_means  # noqa: E402
from pipeline.files import atomic_path, read_csv  # noqa: E402
from pipeline.report.figures import save_figure  # noqa: E402
from pipeline.train.checkpoint import load_model  # noqa: E402
from pipeline.train.loop import autocast  # noqa: E402

logger = logging.getLogger(__name__)

COLUMNS = ["dataset", "method", "seed", "diagnostic", "factor", "latent", "value", "n"]
LATENTS = ("z_f", "z_1:T")


def head_classes(head: JudgeHead, labels: dict[str, np.ndarray]) -> np.ndarray:
    """One class index per clip (N,): the factor's label, or the index of a group's sorted multiset."""
    multisets = heads.true_multisets(head, labels)  # (N, members)
    return np.ravel_multi_index(multisets.T, (head.n_classes,) * len(head.members))


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Test accuracy of a standardised multinomial logistic regression fitted on (train_x, train_y)."""
    if len(np.unique(train_y)) < 2:
        return float(np.mean(test_y == train_y[0]))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return float(probe.fit(train_x, train_y).score(test_x, test_y))


def probe_matrix(
    train_means: dict[str, np.ndarray],
    train_labels: dict[str, np.ndarray],
    test_means: dict[str, np.ndarray],
    test_labels: dict[str, np.ndarray],
    judge_heads: list[JudgeHead],
) -> dict[tuple[str, str], float]:
    """{(head, latent): probe accuracy} for every judge head and latent ((N, D) features per latent)."""
    return {
        (head.name, latent): probe_accuracy(
            train_means[latent],
            head_classes(head, train_labels),
            test_means[latent],
            head_classes(head, test_labels),
        )
        for head in judge_heads
        for latent in train_means
    }


@torch.no_grad()
def judge_decodings(
    net, judge, static: torch.Tensor, dynamic: torch.Tensor, *, batch_size: int, device: str, bf16: bool
) -> dict[str, np.ndarray]:
    """The judge's p(y|x) of every head on clips decoded from given latents (N, D_f), (N, T, D_z)."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in judge.config.heads}
    for start in range(0, len(static), batch_size):
        rows = slice(start, start + batch_size)
        with autocast(device, bf16):
            probs = heads.probabilities(judge(net.decode(static[rows], dynamic[rows])))
        for name, p in probs.items():
            chunks[name].append(p)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def head_accuracies(
    probs: dict[str, np.ndarray], judge_heads: list[JudgeHead], labels_of: dict[str, dict]
) -> dict[str, float]:
    """Accuracy of each head against the labels its kind is scored on (`labels_of[kind]`)."""
    return {h.name: float(heads.correct(h, probs[h.name], labels_of[h.kind]).mean()) for h in judge_heads}


def last_epoch_terms(run_metrics: str) -> dict[str, float]:
    """The loss terms of the last training epoch in a run's metrics.csv."""
    table = read_csv(run_metrics, columns=["epoch", "split", "loss"])
    last = table[table["split"] == "train"].iloc[-1]
    return {k: float(v) for k, v in last.items() if k not in ("epoch", "split", "seconds") and pd.notna(v)}


def _labels(data: ClipSet) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in data.targets.items()}


def _flat(means: tuple[torch.Tensor, torch.Tensor]) -> dict[str, np.ndarray]:
    static, dynamic = means
    return {"z_f": static.cpu().numpy(), "z_1:T": dynamic.flatten(1).cpu().numpy()}


def plot_probes(
    path: str, probes: dict[tuple[str, str], float], chance: dict[str, float], title: str
) -> None:
    """Heat map of the probe matrix: one row per judge head, one column per latent."""
    head_names = list(dict.fromkeys(h for h, _ in probes))
    grid = np.array([[probes[(h, latent)] for latent in LATENTS] for h in head_names])
    fig, ax = plt.subplots(figsize=(4.2, 0.45 * len(head_names) + 1.2), dpi=110)
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(LATENTS)), LATENTS)
    ax.set_yticks(range(len(head_names)), [f"{h} (chance {chance[h]:.2f})" for h in head_names], fontsize=8)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def diagnose_model(
    *,
    model: str,
    judge: str,
    dataset: str,
    output_csv: str,
    output_png: str,
    method: str,
    training_seed: int = 0,
    evaluate: dict = FromConfig("evaluate"),
    bf16: bool | str = FromConfig("train.bf16"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """Write the ceiling, swap, probe and loss diagnostics (module doc) of one trained model."""
    device = resolve_device(device)
    dataset_name = str(read_attrs(dataset)["name"])
    test = load_clips(dataset, "test", limit=evaluate["max_sequences"])
    train = load_clips(dataset, "train", limit=evaluate["probe_sequences"])
    net, judge_net = load_model(model, device), load_model(judge, device)
    dataset_heads = judge_heads(test.factors)
    batches = {"batch_size": evaluate["batch_size"], "device": device, "bf16": resolve_bf16(bf16, device)}
    torch.manual_seed(seed + training_seed)  # first: the unordered model's q(f | x) draws frames at random
    test_means = posterior_means(net, test, **batches)
    rows = []

    def add(diagnostic: str, values: dict, latent: str = "", n: int | None = len(test)) -> None:
        rows.extend(
            {"diagnostic": diagnostic, "factor": factor, "latent": latent, "value": value, "n": n}
            for factor, value in values.items()
        )

    labels = _labels(test)
    ceiling = judge_decodings(net, judge_net, *test_means, **batches)
    add("ceiling", head_accuracies(ceiling, dataset_heads, {"static": labels, "dynamic": labels}))
    partner = torch.randperm(len(test))
    static, dynamic = test_means
    swapped = judge_decodings(net, judge_net, static, dynamic[partner.to(dynamic.device)], **batches)
    partner_labels = {name: values[partner.numpy()] for name, values in labels.items()}
    add("swap", head_accuracies(swapped, dataset_heads, {"static": labels, "dynamic": partner_labels}))

    probes = probe_matrix(
        _flat(posterior_means(net, train, **batches)),
        _labels(train),
        _flat(test_means),
        labels,
        dataset_heads,
    )
    for latent in LATENTS:
        add("probe", {h: v for (h, lat), v in probes.items() if lat == latent}, latent)
    add("loss", last_epoch_terms(str(Path(model).parent / "run" / "metrics.csv")), n=None)
    logger.info("diagnostics of %s seed %d: %s", method, training_seed, rows)

    table = pd.DataFrame(rows).assign(dataset=dataset_name, method=method, seed=training_seed)[COLUMNS]
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    chance = {h.name: float(np.bincount(head_classes(h, labels)).max() / len(test)) for h in dataset_heads}
    plot_probes(
        output_png, probes, chance, f"{dataset_name} {method} seed {training_seed}: linear probe accuracy"
    )
