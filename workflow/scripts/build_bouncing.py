from pipeline.data.bouncing import build_bouncing
from pipeline.stage import run_stage

run_stage(snakemake, build_bouncing, output=snakemake.output[0])
