# Constants and named input functions shared by the rule files.

FIGURE_KINDS = ["swap", "generation"]


wildcard_constraints:
    dataset="[a-z0-9]+",
    method="[a-z0-9_]+",
    source="[a-z0-9-]+",


def metrics_of_all_models(wildcards):
    return expand(
        "results/metrics/{dataset}/{method}.csv",
        dataset=config["datasets"],
        method=config["methods"],
    )


def judge_accuracies(wildcards):
    return expand("results/judges/{dataset}/accuracy.csv", dataset=config["datasets"])


def variant_weights(wildcards):
    return config["variants"][wildcards.method]


def figures_of_all_models(wildcards):
    return expand(
        "results/figures/{dataset}/{method}_{kind}.png",
        dataset=config["datasets"],
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
