from pipeline.data.audio import build_audio
from pipeline.stage import run_stage

run_stage(
    snakemake,
    build_audio,
    dataset=snakemake.wildcards.dataset,
    root=snakemake.params.root,
    output=snakemake.output[0],
    features=snakemake.params.features,
)
