# Constants and named input functions shared by the rule files.

FIGURE_KINDS = ["swap", "generation"]
# The datasets of each results table: Table 1 has the paper's columns, moving dSprites its own table.
TABLE_DATASETS = {"table1": config["datasets"], "dsprites": ["dsprites"]}


wildcard_constraints:
    dataset="[a-z0-9]+",
    method="[a-z0-9_]+",
    source="[a-z0-9-]+",
    table="|".join(TABLE_DATASETS),


def metrics_of_table(wildcards):
    return expand(
        "results/metrics/{dataset}/{method}.csv",
        dataset=TABLE_DATASETS[wildcards.table],
        method=config["methods"],
    )


def judge_accuracies_of_table(wildcards):
    return expand(
        "results/judges/{dataset}/accuracy.csv", dataset=TABLE_DATASETS[wildcards.table]
    )


def variant_weights(wildcards):
    return config["variants"][wildcards.method]


def default_tables(wildcards):
    return expand("results/tables/{table}.csv", table=config["tables"])


def figures_of_all_models(wildcards):
    return expand(
        "results/figures/{dataset}/{method}_{kind}.png",
        dataset=[d for table in config["tables"] for d in TABLE_DATASETS[table]],
        method=config["methods"],
        kind=FIGURE_KINDS,
    )


def audio_source(wildcards):
    """FSDD comes through download_source; TIMIT is the user's folder (timit.root), not a workflow file."""
    return ["resources/fsdd/SHA256SUMS"] if wildcards.dataset == "fsdd" else []


def audio_root(wildcards):
    return "resources/fsdd" if wildcards.dataset == "fsdd" else config["timit"]["root"]


def audio_model_spec(wildcards):
    return config["audio"]["models"][wildcards.method]


def verification_of_all_audio_models(wildcards):
    return expand(
        "results/metrics/{dataset}/{method}/z{dim}_verification.csv",
        dataset=config["audio_datasets"],
        method=config["audio"]["methods"],
        dim=config["audio"]["dims"],
    )


def conversions_of_all_audio_models(wildcards):
    return expand(
        "results/figures/{dataset}/{method}/z{dim}_conversion.png",
        dataset=config["audio_datasets"],
        method=config["audio"]["methods"],
        dim=config["audio"]["dims"],
    )
