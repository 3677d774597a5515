# Constants and named input functions shared by the rule files. Snakemake parses these without torch, so
# what they need of the model families comes from the torch-free registry (pipeline/train/families.py).
# judge_settings: a dataset's judge settings; requested_gpus: the `gpu` resource of every rule whose stage
# can compute on the GPU, from config device
from pipeline.config import judge_settings, requested_gpus
from pipeline.train.families import audio_variant, family, seeds_of, variant_family

FIGURE_KINDS = ["swap", "generation"]
# Datasets holding a clip and its mirror image: the flow-direction figure's pair (pipeline/report/flow.py)
MIRRORED_DATASETS = ["sprites"]
LATENT_FIGURE_KINDS = ["zgrid", "ztrace"]  # the unordered model's latent-space figures


wildcard_constraints:
    dataset="[a-z0-9]+",
    method="[a-z0-9_]+",
    source="[a-z0-9-]+",
    training_seed="[0-9]+",
    table="|".join(config["table_datasets"]),


def family_of_row(method):
    return family(variant_family(config["variants"][method]))


# Datasets read from the user's licensed copy: name -> why a table leaves it out while its folder is unset.
LICENSED = {
    "mug": "MUG is licensed: its column needs your copy, mug.root (README, MUG; https://mug.ee.auth.gr/fed/)",
}


def unset_licensed(datasets):
    """{dataset: why} of the licensed datasets among `datasets` whose folder (config DATASET.root) is null."""
    return {
        d: LICENSED[d] for d in datasets if d in LICENSED and config[d]["root"] is None
    }


def left_out_by_config(datasets):
    """{dataset: why} of the datasets among `datasets` that config leave_out names with a reason (an empty reason puts it back)."""
    return {d: why for d, why in config["leave_out"].items() if d in datasets and why}


def table_datasets(table):
    """The datasets (columns) of results table `table`, config table_datasets, less those config leave_out
    names; a licensed one without its folder is left out of a table that has other datasets, and kept in a
    table of its own (whose build then stops with the fix)."""
    datasets = config["table_datasets"][table]
    wanted = [d for d in datasets if d not in left_out_by_config(datasets)]
    unset = unset_licensed(wanted)
    return [d for d in wanted if d not in unset] or wanted


def table_methods(table):
    """The rows of results table `table`: config table_methods, else methods."""
    return config["table_methods"].get(table, config["methods"])


def left_out_of_table(wildcards):
    """{dataset: why} of the datasets of the table that table_datasets leaves out (make_table notes them)."""
    datasets = config["table_datasets"][wildcards.table]
    kept = table_datasets(wildcards.table)
    why = left_out_by_config(datasets) | unset_licensed(datasets)
    return {d: reason for d, reason in why.items() if d not in kept}


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
        for dataset in table_datasets(wildcards.table)
        for method, seed, _ in trained_models(dataset, table_methods(wildcards.table))
    ]


# (method, seed, path) of the models DSVAE's two studies read
DSVAE_TABLE1_MODELS = trained_models("sprites", config["dsvae_table1_methods"])
DYNAMICS_MODELS = trained_models("bouncing", config["dynamics_methods"])


def diagnostics_of_table(wildcards):
    """The diagnostics of every row that has an encoder (MoCoGAN has no posterior to probe)."""
    encoded = [m for m in table_methods(wildcards.table) if family_of_row(m).encoder]
    return [
        f"results/metrics/{dataset}/{method}/seed{seed}_diagnostics.csv"
        for dataset in table_datasets(wildcards.table)
        for method, seed, _ in trained_models(dataset, encoded)
    ]


def judge_accuracies_of_table(wildcards):
    return expand(
        "results/judges/{dataset}/accuracy.csv",
        dataset=table_datasets(wildcards.table),
    )


def judge_of_dataset(wildcards):
    return judge_settings(config["judge"], wildcards.dataset)


def datasets_of_table(wildcards):
    return expand("results/data/{dataset}.h5", dataset=table_datasets(wildcards.table))


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
    """The figures of every row of every default table, on each of its datasets (the unordered model's
    latent-space figures too: its z_t codes one frame), of a face dataset's landmark labels and of Sprites'
    flow-direction labels.
    """
    rows = dict.fromkeys(
        (dataset, method)
        for table in config["tables"]
        if table in config["table_datasets"]
        for dataset in table_datasets(table)
        for method in table_methods(table)
    )
    datasets = dict.fromkeys(dataset for dataset, _ in rows)
    labels = [
        f"results/figures/{dataset}/landmarks.png"
        for dataset in datasets
        if config["dfp_labels"].get(dataset) == "landmarks"
    ] + [
        f"results/figures/{dataset}/flow_directions.png"
        for dataset in datasets
        if dataset in MIRRORED_DATASETS
    ]
    return labels + [
        f"results/figures/{dataset}/{method}_{kind}.png"
        for dataset, method in rows
        for kind in FIGURE_KINDS
        + (LATENT_FIGURE_KINDS if family_of_row(method).frame_latents else [])
    ]


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
