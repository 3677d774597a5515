from pipeline.data.audio import build_audio
from pipeline.stage import run_stage

run_stage(snakemake, build_audio, dataset=snakemake.wildcards.dataset, output=snakemake.output[0])
