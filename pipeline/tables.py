"""Stages `make_table` and `make_table3`: our rows beside the published ones, as tidy CSV and Markdown.

`table1` holds the paper's datasets (Sprites, SMMNIST); `dsprites` holds moving dSprites, which has no
published numbers; `table3` is speaker verification.
"""

from __future__ import annotations

import pandas as pd

from pipeline.evaluate import COLUMNS, HEADLINE, protocol_of
from pipeline.h5io import atomic_path
from pipeline.verification import COLUMNS as VERIFICATION_COLUMNS

TITLES = {
    "table1": "Table 1 (S3VAE): generation scored by the judge",
    "dsprites": "Moving dSprites: generation scored by the judge",
}


def _cell(value: float, std: float) -> str:
    return f"{value:.4f}" if pd.isna(std) else f"{value:.4f} ± {std:.4f}"


def _grid(metrics: list[str], rows: list[tuple[str, dict[str, str]]], first: str = "method") -> list[str]:
    header = [m.replace("|", "\\|") for m in metrics]  # H(y|x) would split a Markdown cell
    lines = [f"| {first} | " + " | ".join(header) + " |", "|" + "---|" * (len(metrics) + 1)]
    lines += [f"| {label} | " + " | ".join(cells.get(m, "") for m in metrics) + " |" for label, cells in rows]
    return lines + [""]


def _direction_note(dataset: str) -> str:
    directions = protocol_of(dataset).directions
    if len(directions) == 1:
        return f"each metric is of the {directions[0]} direction only (pipeline/evaluate.py)."
    return "each metric averages the " + " and ".join(directions) + " directions (pipeline/evaluate.py)."


def markdown_table(title: str, ours: pd.DataFrame, published: pd.DataFrame, judges: pd.DataFrame) -> str:
    lines = [f"# {title}", ""]
    for dataset, rows in ours.groupby("dataset", sort=False):
        mine = [
            (f"ours: {method}", {r.metric: _cell(r.value, r.std) for r in part.itertuples()})
            for method, part in rows.groupby("method", sort=False)
        ]
        theirs = [
            (f"published: {method}", {r.metric: f"{r.value:.4f}" for r in part.itertuples()})
            for method, part in published[published["dataset"] == dataset].groupby("method", sort=False)
        ]
        by_direction = [m for m in dict.fromkeys(rows["metric"]) if m not in HEADLINE]
        n = int(rows["n"].iloc[0])
        lines += [f"## {dataset}", ""] + _grid(list(HEADLINE), mine + theirs)
        lines += [
            f"Ours: mean ± std over the repeats, {n} test clips each; {_direction_note(dataset)}",
            "Published: labelled rows with their source in the CSV's source column." if theirs else "",
            "",
            f"### {dataset}, by direction",
            "",
        ] + _grid(by_direction, mine)
    lines += [
        "## Judge test accuracy (real clips)",
        "",
        "| dataset | head | accuracy | n |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.dataset} | {r.head} | {r.accuracy:.4f} | {r.n} |" for r in judges.itertuples()]
    return "\n".join(lines) + "\n"


def make_table(
    *, table: str, metrics: list[str], judges: list[str], published: str, output_csv: str, output_md: str
) -> None:
    """Concatenate per-model metric files; add the published rows labelled as such."""
    ours = pd.concat([pd.read_csv(path) for path in metrics], ignore_index=True)
    ours["source"] = "seqdis"
    reference = pd.read_csv(published)
    reference = reference[reference["dataset"].isin(ours["dataset"].unique())]
    reference = reference.assign(method="published: " + reference["method"], std=float("nan"), n=pd.NA)
    rows = pd.concat([ours, reference[COLUMNS + ["source"]]], ignore_index=True)
    judge_table = pd.concat([pd.read_csv(path) for path in judges], ignore_index=True)
    with atomic_path(output_csv) as tmp:
        rows.to_csv(tmp, index=False)
    published_rows = reference.assign(method=reference["method"].str.removeprefix("published: "))
    with atomic_path(output_md) as tmp:
        tmp.write_text(markdown_table(TITLES[table], ours, published_rows, judge_table))


def markdown_table3(table: pd.DataFrame) -> str:
    lines = ["# Table 3 (S3VAE) / Table 2 (DSVAE): speaker verification EER (lower: more speaker)", ""]
    for dataset, rows in table.groupby("dataset", sort=False):
        lines += [
            f"## {dataset}",
            "",
            "| model | feature | dim | EER (%) | source |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.model} | {r.feature} | {r.dim} | {100 * r.eer:.2f} | {r.source} |"
            for r in rows.itertuples()
        ]
        notes = rows.loc[rows["source"] == "seqdis", "note"].dropna().unique()
        lines += [""] + [f"Ours: {note}." for note in notes] + [""]
    return "\n".join(lines) + "\n"


def make_table3(*, verification: list[str], published: str, output_csv: str, output_md: str) -> None:
    """Concatenate per-model verification files; add the published rows labelled `published: `."""
    ours = pd.concat([pd.read_csv(path) for path in verification], ignore_index=True)
    ours["source"] = "seqdis"
    reference = pd.read_csv(published, comment="#")
    reference = reference.assign(model="published: " + reference["model"])
    table = pd.concat([ours, reference], ignore_index=True)[VERIFICATION_COLUMNS + ["source"]]
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(output_md) as tmp:
        tmp.write_text(markdown_table3(table))


def markdown_dsvae_table1(table: pd.DataFrame) -> str:
    """DSVAE Table 1 (rows of dsvae_study.TABLE1_COLUMNS) as one attribute-by-metric grid per method."""
    metrics = list(dict.fromkeys(table["metric"]))
    n = int(table["n"].iloc[0]) if len(table) else 0
    lines = ["# DSVAE Table 1: judge on data against judge on generated clips", ""]
    for method, rows in table.groupby("method", sort=False):
        lines += [f"## {method}", ""]
        grid = [
            (
                f"{attribute} ({group['kind'].iloc[0]})",
                {r.metric: _cell(r.value, r.std) for r in group.itertuples()},
            )
            for attribute, group in rows.groupby("attribute", sort=False)
        ]
        lines += _grid(metrics, grid, first="attribute")
    lines.append(
        f"Mean ± std over the repeats, {n} test clips each. A static attribute's recon keeps f and draws "
        "z_1:T from the prior; the dynamic one keeps z_1:T and draws f. Definitions: pipeline/dsvae_study.py."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(make_table, make_table3)
