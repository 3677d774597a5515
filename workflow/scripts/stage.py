# The script of every rule but download_source: the rule runs the stage function of its name, with its named
# inputs, named outputs and params as keyword arguments (pipeline.stage.run_rule).
from pipeline.stage import run_rule

run_rule(snakemake)
