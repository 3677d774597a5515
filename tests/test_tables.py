"""Table 1 from per-seed metric files: mean and std over training seeds, the claims they support, a
column withheld when its judge cannot read real clips, titles and directions from the dataset files, and
all of it without torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import h5io, smmnist, sprites
from pipeline.report.tables import judge_verdicts, make_table, over_seeds, supported_claims

REPO = Path(__file__).resolve().parents[1]
REPO_PUBLISHED = "workflow/published/table1.csv"


def dataset_file(folder: Path, name: str, protocol: h5io.Protocol) -> str:
    """A one-clip dataset file that carries `protocol`: all make_table reads of a dataset."""
    split = {"frames": np.zeros((1, 2, 4, 4, 1), np.uint8), "sequence_id": [0], protocol.score_head: [0]}
    factor = h5io.Factor(protocol.score_head, "static", ("a",))
    path = folder / f"{name}.h5"
    h5io.write_dataset(path, name=name, factors=[factor], splits={"train": split}, protocol=protocol)
    return str(path)


@pytest.fixture(scope="module")
def table1_datasets(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("data")
    return [
        dataset_file(folder, "sprites", sprites.PROTOCOL),
        dataset_file(folder, "smmnist", smmnist.PROTOCOL),
    ]


def per_seed_rows(dataset: str, method: str, accs: list[float]) -> pd.DataFrame:
    rows = []
    for seed, acc in enumerate(accs):
        for metric, value in (
            ("Acc", acc),
            ("IS", 2.0),
            ("H(y|x)", 0.5),
            ("H(y)", 1.0),
            ("Acc/fixed_static", acc),
        ):
            rows.append(
                {"dataset": dataset, "method": method, "seed": seed, "metric": metric} | {"value": value}
            )
    return pd.DataFrame(rows).assign(std=0.01, n=10)


def test_over_seeds_is_the_mean_and_sample_std():
    table = over_seeds(per_seed_rows("sprites", "full", [0.8, 0.9, 1.0]), ["dataset", "method", "metric"])
    acc = table[table["metric"] == "Acc"].iloc[0]
    assert acc["value"] == pytest.approx(0.9) and acc["std"] == pytest.approx(0.1)  # ddof 1
    assert acc["seeds"] == 3 and acc["std_repeats"] == pytest.approx(0.01)


def test_a_difference_is_claimed_only_beyond_both_seed_stds():
    rows = pd.DataFrame(
        [
            {"method": "full", "metric": "Acc", "value": 0.90, "std": 0.01},
            {"method": "baseline", "metric": "Acc", "value": 0.80, "std": 0.02},
            {"method": "noisy", "metric": "Acc", "value": 0.85, "std": 0.10},
        ]
    )
    assert supported_claims(rows) == ["full > baseline (0.9000 vs 0.8000)"]


def test_a_judge_below_its_bar_withholds_its_dataset():
    judges = pd.DataFrame(
        [
            {"dataset": "sprites", "head": "action", "accuracy": 1.0, "n": 10},
            {"dataset": "smmnist", "head": "digits", "accuracy": 0.52, "n": 10},
        ]
    )
    withheld = judge_verdicts(judges, {"sprites": 0.99, "smmnist": 0.9})
    assert list(withheld) == ["smmnist"]
    assert "digits 0.5200" in withheld["smmnist"] and "judge.min_accuracy.smmnist" in withheld["smmnist"]


def test_make_table_aggregates_seeds_and_withholds_a_weak_judge(tmp_path, table1_datasets):
    metrics = []
    for dataset, method, accs in (("sprites", "full", [0.9, 0.92]), ("sprites", "baseline", [0.5, 0.6])):
        path = tmp_path / f"{dataset}_{method}.csv"
        per_seed_rows(dataset, method, accs).to_csv(path, index=False)
        metrics.append(str(path))
    smmnist = tmp_path / "smmnist_full.csv"
    per_seed_rows("smmnist", "full", [0.3, 0.4]).to_csv(smmnist, index=False)
    judges = []
    for dataset, accuracy in (("sprites", 1.0), ("smmnist", 0.52)):
        path = tmp_path / f"{dataset}_accuracy.csv"
        pd.DataFrame([{"dataset": dataset, "head": "h", "accuracy": accuracy, "n": 10}]).to_csv(
            path, index=False
        )
        judges.append(str(path))
    csv, md = tmp_path / "table1.csv", tmp_path / "table1.md"
    make_table(
        datasets=table1_datasets,
        metrics=metrics + [str(smmnist)],
        judges=judges,
        published=REPO_PUBLISHED,
        output_csv=str(csv),
        output_md=str(md),
        judge_bars={"sprites": 0.99, "smmnist": 0.9},
    )
    table = pd.read_csv(csv)
    assert "smmnist" not in set(table["dataset"])  # neither our rows nor the published ones
    full = table[(table["method"] == "full") & (table["metric"] == "Acc")].iloc[0]
    assert full["value"] == pytest.approx(0.91) and full["std"] == pytest.approx(np.std([0.9, 0.92], ddof=1))
    assert (table["source"] == "seqdis").sum() == 2 * 5
    assert table["method"].str.startswith("published: ").sum() == 5 * 4  # Sprites' five published rows
    text = md.read_text()
    assert "## Stochastic moving MNIST (smmnist): withheld" in text and "h 0.5200" in text
    assert "full > baseline" in text and "over 2 training seeds" in text


def test_the_diagnostics_of_a_table_keep_the_terms_without_a_latent(tmp_path, table1_datasets):
    """Ceiling, swap and loss rows have no latent (an empty CSV cell, NaN once read): none is dropped."""
    rows = [("ceiling", "action", "", 0.9), ("swap", "action", "", 0.3), ("probe", "action", "z_f", 1.0)]
    rows += [("loss", "recon", "", -2000.0)]
    diagnostics = tmp_path / "seed0_diagnostics.csv"
    pd.DataFrame(
        [
            {"dataset": "sprites", "method": "full", "seed": seed, "diagnostic": d, "factor": f, "latent": z}
            | {"value": v + seed * 0.02, "n": 10}
            for seed in (0, 1)
            for d, f, z, v in rows
        ]
    ).to_csv(diagnostics, index=False)
    metrics, judge = tmp_path / "full.csv", tmp_path / "accuracy.csv"
    per_seed_rows("sprites", "full", [0.9, 0.92]).to_csv(metrics, index=False)
    judge_row = {"dataset": "sprites", "head": "action", "accuracy": 1.0, "n": 10}
    pd.DataFrame([judge_row]).to_csv(judge, index=False)
    md = tmp_path / "table1.md"
    make_table(
        datasets=table1_datasets,
        metrics=[str(metrics)],
        judges=[str(judge)],
        published=REPO_PUBLISHED,
        output_csv=str(tmp_path / "table1.csv"),
        output_md=str(md),
        diagnostics=[str(diagnostics)],
    )
    text = md.read_text().split("diagnostics (pipeline/evaluate/diagnostics.py)")[1]
    ceiling, swap, probe, loss = text.split("####")[1:5]
    assert "| full | 0.9100 ± 0.0141 |" in ceiling  # mean ± sample std over the two seeds
    assert "| full | 0.3100 ± 0.0141 |" in swap
    assert "| full | 1.01 |" in probe
    assert "| full | -2000 |" in loss


def table_inputs(folder: Path, datasets: list[str]) -> dict:
    """make_table's inputs for `datasets` (dataset names): two rows of two seeds each, judges that pass."""
    metrics, judges = [], []
    for dataset in datasets:
        for method, accs in (("full", [0.9, 0.92]), ("baseline", [0.5, 0.6])):
            path = folder / f"{dataset}_{method}.csv"
            per_seed_rows(dataset, method, accs).to_csv(path, index=False)
            metrics.append(str(path))
        path = folder / f"{dataset}_accuracy.csv"
        pd.DataFrame([{"dataset": dataset, "head": "h", "accuracy": 1.0, "n": 10}]).to_csv(path, index=False)
        judges.append(str(path))
    return {
        "metrics": metrics,
        "judges": judges,
        "published": str(REPO / REPO_PUBLISHED),
        "output_csv": str(folder / "table.csv"),
        "output_md": str(folder / "table.md"),
    }


def test_titles_and_directions_come_from_the_dataset_files(tmp_path, table1_datasets):
    make_table(datasets=table1_datasets, **table_inputs(tmp_path, ["sprites", "smmnist"]))
    text = (tmp_path / "table.md").read_text()
    assert text.startswith("# Sprites and Stochastic moving MNIST: generation scored by the judge\n")
    sprites_part, smmnist_part = text.split("\n## Sprites (sprites)\n")[1].split("\n## Stochastic moving")
    assert "averages the fixed_dynamics and fixed_static directions" in sprites_part
    assert "of the fixed_static direction only" in smmnist_part
    assert "### Sprites (sprites), by direction" in text


def test_rows_of_a_dataset_without_its_file_name_the_dataset_and_the_fix(tmp_path, table1_datasets):
    with pytest.raises(ValueError, match=r"rows of datasets \['smmnist'\] but none of the dataset files"):
        make_table(datasets=table1_datasets[:1], **table_inputs(tmp_path, ["sprites", "smmnist"]))


def test_tables_are_built_without_torch(tmp_path):
    """pipeline.report.tables reads CSV files and the datasets' attributes with pandas and h5py alone: in a
    process where `import torch` fails, it builds a dSprites table."""
    blocked = tmp_path / "blocked" / "torch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    # not the builder's protocol: the table shows what the file says, not what the code knows
    protocol = h5io.Protocol(("fixed_dynamics",), "motion", "Moving dots")
    datasets = [dataset_file(tmp_path, "dsprites", protocol)]
    inputs = table_inputs(tmp_path, ["dsprites"])
    script = (
        "import sys\n"
        "from pipeline.report.tables import make_table\n"
        f"make_table(datasets={datasets!r}, **{inputs!r})\n"
        "assert 'torch' not in sys.modules\n"
    )
    path = [str(blocked.parent), str(REPO), os.environ.get("PYTHONPATH", "")]
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(inputs["output_csv"])
    assert set(table["dataset"]) == {"dsprites"} and (table["source"] == "seqdis").all()
    assert sorted(table["method"].unique()) == ["baseline", "full"]
    text = Path(inputs["output_md"]).read_text()
    assert "## Moving dots (dsprites)" in text and "of the fixed_dynamics direction only" in text
    blocked_import = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "torch is blocked" in blocked_import.stderr  # the block works, so the table really had no torch


def test_the_mug_column_and_table2_print_the_papers_rows(tmp_path):
    """Table 1's MUG column and Table 2 (S3VAE's ablation on MUG) beside their published rows."""
    from pipeline.data import mug

    datasets = [dataset_file(tmp_path, "mug", mug.PROTOCOL)]
    make_table(datasets=datasets, **table_inputs(tmp_path, ["mug"]))
    table = pd.read_csv(tmp_path / "table.csv")
    published = table[table["method"] == "published: full model"].set_index("metric")["value"]
    assert published.to_dict() == {"Acc": 0.7051, "IS": 5.136, "H(y|x)": 0.135, "H(y)": 1.76}
    assert "## MUG (mug)" in (tmp_path / "table.md").read_text()
    inputs = table_inputs(tmp_path, ["mug"]) | {"published": str(REPO / "workflow/published/table2.csv")}
    make_table(datasets=datasets, **inputs)
    table = pd.read_csv(tmp_path / "table.csv")
    rows = table.loc[table["source"] != "seqdis"]
    assert list(dict.fromkeys(rows["method"])) == [
        f"published: {row}" for row in ("No L_SCC", "No L_DFP", "No L_MI", "Full model")
    ]
    no_dfp = rows[rows["method"] == "published: No L_DFP"].set_index("metric")["value"]
    assert no_dfp.to_dict() == {"Acc": 0.5832, "IS": 4.423, "H(y|x)": 0.284, "H(y)": 1.721}
    assert rows["source"].str.contains("Table 2, row").all()


def test_every_published_number_is_quoted_from_the_paper():
    """Each published MUG value is printed in the paper's text as it is in the CSV (Acc as a percentage)."""
    path = REPO.parent / "shared" / "papers" / "000_150af5f5af771f7e.txt"
    if not path.exists():
        pytest.skip(f"no copy of the S3VAE paper's text at {path}")
    paper = path.read_text()
    for name in ("table1.csv", "table2.csv"):
        rows = pd.read_csv(REPO / "workflow" / "published" / name)
        for row in rows[rows["dataset"] == "mug"].itertuples():
            text = f"{100 * row.value:.2f}%" if row.metric == "Acc" else f"{row.value:.3f}"
            assert text in paper, (name, row.method, row.metric, text)
            assert row.source.endswith("../shared/papers/000_150af5f5af771f7e.txt")


def test_a_dataset_left_out_of_a_table_is_named_with_the_fix(tmp_path, table1_datasets):
    why = "MUG is licensed: its column needs your copy, mug.root"
    make_table(
        datasets=table1_datasets, left_out={"mug": why}, **table_inputs(tmp_path, ["sprites", "smmnist"])
    )
    text = (tmp_path / "table.md").read_text()
    assert f"## mug: left out\n\nNot built: {why}." in text
    assert "mug" not in set(pd.read_csv(tmp_path / "table.csv")["dataset"])  # nor its published rows
