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
