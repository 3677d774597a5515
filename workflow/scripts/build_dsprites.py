from pipeline.data.dsprites import build_dsprites
from pipeline.stage import run_stage

run_stage(
    snakemake,
    build_dsprites,
    output=snakemake.output[0],
    train_sequences=snakemake.params.train_sequences,
    test_sequences=snakemake.params.test_sequences,
    frames=snakemake.params.frames,
    image_size=snakemake.params.image_size,
    seed=snakemake.params.seed,
)
