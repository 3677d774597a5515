rule download_source:
    """Fetch one source's files (from `mirror` when set), verify every sha256, list them in SHA256SUMS.

    The mirror is read from config, not params: where the same bytes come from is no reason to rerun.
    """
    output:
        "resources/{source}/SHA256SUMS",
    log:
        "logs/download_source/{source}.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    script:
        "../scripts/download_source.py"
