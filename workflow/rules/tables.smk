rule make_table:
    """A results table (table1: Sprites and SMMNIST; dsprites): every model's metrics, judge accuracy, published rows."""
    input:
        metrics=metrics_of_table,
        diagnostics=diagnostics_of_table,
        judges=judge_accuracies_of_table,
        published="workflow/published/{table}.csv",
    output:
        csv=report("results/tables/{table}.csv", category="Tables"),
        md="results/tables/{table}.md",
    log:
        "logs/make_table/{table}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    params:
        judge_bars=config["judge"]["min_accuracy"],
    script:
        "../scripts/make_table.py"
