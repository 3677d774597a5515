from pipeline.stage import run_stage
from pipeline.train.model import train_model

run_stage(
    snakemake,
    train_model,
    dataset=snakemake.input.dataset,
    labels=snakemake.input.get("labels"),
    output=snakemake.output[0],
    training_seed=int(snakemake.wildcards.seed),
)
