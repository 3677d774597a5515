"""The columns of the tidy CSV files that evaluation writes and the tables read.

Torch-free, so that `pipeline.report.tables` builds the tables with pandas and h5py alone.
"""

# results/metrics/{dataset}/{method}/seed{k}.csv (evaluate_model); std is over the repeats
METRIC_COLUMNS = ["dataset", "method", "seed", "metric", "value", "std", "n"]
# The metrics of a table's main grid, each the mean over the dataset's directions
HEADLINE = ("Acc", "IS", "H(y|x)", "H(y)")
# results/metrics/{dataset}/{method}/z{dim}_verification.csv (evaluate_verification)
VERIFICATION_COLUMNS = ["dataset", "model", "feature", "dim", "eer", "utterances", "trials", "note"]
# results/tables/{table}.csv (make_table): mean and std over training seeds
TABLE_COLUMNS = ["dataset", "method", "metric", "value", "std", "seeds", "std_repeats", "n", "source"]
