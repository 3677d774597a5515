from pipeline.stage import run_stage
from pipeline.train.audio import train_audio_model

run_stage(
    snakemake,
    train_audio_model,
    dataset=snakemake.input.dataset,
    labels=snakemake.input.labels,
    output=snakemake.output[0],
)
