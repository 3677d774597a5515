# Constants and named input functions shared by the rule files. Snakemake parses these without torch, so
# what they need of the model families comes from the torch-free registry (pipeline/train/families.py).
from pipeline.train.families import audio_variant, family, seeds_of, variant_family

FIGURE_KINDS = ["swap", "generation"]
LATENT_FIGURE_KINDS = ["zgrid", "ztrace"]  # the unordered model's latent-space figures


wildcard_constraints:
    dataset="[a-z0-9]+",
    method="[a-z0-9_]+",
    source="[a-z0-9-]+",
    training_seed="[0-9]+",
    table="|".join(config["table_datasets"]),


def family_of_row(method):
    return family(variant_family(config["variants"][method]))


# the rows whose z_t codes one frame: they get the latent-space figures (the unordered model's)
FRAME_LATENT_METHODS = [m for m in config["methods"] if family_of_row(m).frame_latents]


def trained_models(dataset, methods):
    """Every trained model of `methods` on `dataset`: (method, seed, model path), seeds inner (seed0 draws
    a row's figures)."""
    return [
        (m, seed, f"results/models/{dataset}/{m}/seed{seed}/model.pt")
        for m in methods
        for seed in seeds_of(config["variants"][m], config["train"]["seeds"])
    ]


def metrics_of_table(wildcards):
    return [
        f"results/metrics/{dataset}/{method}/seed{seed}.csv"
        for dataset in config["table_datasets"][wildcards.table]
        for method, seed, _ in trained_models(dataset, config["methods"])
    ]


# (method, seed, path) of the models DSVAE's two studies read
DSVAE_TABLE1_MODELS = trained_models("sprites", config["dsvae_table1_methods"])
DYNAMICS_MODELS = trained_models("bouncing", config["dynamics_methods"])


def diagnostics_of_table(wildcards):
    """The diagnostics of every row that has an encoder (MoCoGAN has no posterior to probe)."""
    encoded = [m for m in config["methods"] if family_of_row(m).encoder]
    return [
        f"results/metrics/{dataset}/{method}/seed{seed}_diagnostics.csv"
        for dataset in config["table_datasets"][wildcards.table]
        for method, seed, _ in trained_models(dataset, encoded)
    ]


def judge_accuracies_of_table(wildcards):
    return expand(
        "results/judges/{dataset}/accuracy.csv",
        dataset=config["table_datasets"][wildcards.table],
    )


def datasets_of_table(wildcards):
    return expand(
        "results/data/{dataset}.h5", dataset=config["table_datasets"][wildcards.table]
    )


def variant_of_row(wildcards):
    return config["variants"][wildcards.method]


def training_inputs(wildcards):
    """The dataset, and the pseudo labels of a family that trains on them (S3VAE's DFP term: the flow, or
    the labels config `dfp_labels` names for the dataset: landmarks on faces)."""
    inputs = {"dataset": f"results/data/{wildcards.dataset}.h5"}
    for default in family_of_row(wildcards.method).labels:
        labeller = config["dfp_labels"].get(wildcards.dataset, default)
        inputs["labels"] = f"results/labels/{wildcards.dataset}/{labeller}.h5"
    return inputs


def default_tables(wildcards):
    return expand("results/tables/{table}.csv", table=config["tables"])


def figures_of_all_models(wildcards):
    datasets = [
        d for table in config["tables"] for d in config["table_datasets"].get(table, [])
    ]
    return expand(
        "results/figures/{dataset}/{method}_{kind}.png",
        dataset=datasets,
        method=config["methods"],
        kind=FIGURE_KINDS,
    ) + expand(
        "results/figures/{dataset}/{method}_{kind}.png",
        dataset=datasets,
        method=FRAME_LATENT_METHODS,
        kind=LATENT_FIGURE_KINDS,
    )


def audio_source(wildcards):
    """FSDD comes through download_source; TIMIT is the user's folder (timit.root), not a workflow file."""
    return ["resources/fsdd/SHA256SUMS"] if wildcards.dataset == "fsdd" else []


def grid_source(wildcards):
    """The mirror's GRID samples come through download_source; the full corpus is the user's grid.root."""
    return [] if config["grid"]["root"] else ["resources/grid-samples/SHA256SUMS"]


def audio_root(wildcards):
    return "resources/fsdd" if wildcards.dataset == "fsdd" else config["timit"]["root"]


def audio_variant_of_row(wildcards):
    spec = config["audio"]["models"][wildcards.method]
    return audio_variant(spec, config["variants"], int(wildcards.dim))


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
