from pipeline.data.dsprites import build_dsprites
from pipeline.stage import run_stage

run_stage(snakemake, build_dsprites, output=snakemake.output[0])
