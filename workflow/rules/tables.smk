rule make_table1:
    """Table 1: every model's metrics, the judges' accuracy and the published rows, as CSV and Markdown."""
    input:
        metrics=metrics_of_all_models,
        judges=judge_accuracies,
        published="workflow/published/table1.csv",
    output:
        csv=report("results/tables/table1.csv", category="Tables"),
        md="results/tables/table1.md",
    log:
        "logs/make_table1/table1.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    script:
        "../scripts/make_table1.py"
