rule evaluate_model:
    """Table 1 metrics of one model: regenerate test clips with one latent fixed, score with the judge."""
    input:
        model="results/models/{dataset}/{method}/model.pt",
        judge="results/judges/{dataset}/judge.pt",
        dataset="results/data/{dataset}.h5",
    output:
        "results/metrics/{dataset}/{method}.csv",
    log:
        "logs/evaluate_model/{dataset}_{method}.log",
    benchmark:
        "benchmarks/evaluate_model/{dataset}_{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        evaluate=config["evaluate"],
    script:
        "../scripts/evaluate_model.py"


rule plot_figures:
    """Swap grid and fixed-latent generations of one model (S3VAE Fig. 4 and 7a)."""
    input:
        model="results/models/{dataset}/{method}/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        swap=report("results/figures/{dataset}/{method}_swap.png", category="Figures"),
        generation=report(
            "results/figures/{dataset}/{method}_generation.png", category="Figures"
        ),
    log:
        "logs/plot_figures/{dataset}_{method}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/plot_figures.py"


rule plot_latent_space:
    """The unordered model's decodings over its z plane for two identities (Fig. 3) and a z trace (Fig. 4b)."""
    input:
        model="results/models/{dataset}/{method}/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        grid=report("results/figures/{dataset}/{method}_zgrid.png", category="Figures"),
        trace=report(
            "results/figures/{dataset}/{method}_ztrace.png", category="Figures"
        ),
    log:
        "logs/plot_latent_space/{dataset}_{method}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/plot_latent_space.py"
