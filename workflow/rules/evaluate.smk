rule evaluate_model:
    """Table 1 metrics of one model: regenerate test clips with one latent fixed, score with the judge."""
    input:
        model="results/models/{dataset}/{method}/seed{seed}/model.pt",
        judge="results/judges/{dataset}/judge.pt",
        dataset="results/data/{dataset}.h5",
    output:
        "results/metrics/{dataset}/{method}/seed{seed}.csv",
    log:
        "logs/evaluate_model/{dataset}_{method}_seed{seed}.log",
    benchmark:
        "benchmarks/evaluate_model/{dataset}_{method}_seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        evaluate=config["evaluate"],
        seed=config["seed"],
    script:
        "../scripts/evaluate_model.py"


rule diagnose_model:
    """Where each factor lives: judge on reconstructions and swaps, linear probes of z_f and z_1:T, loss terms."""
    input:
        model="results/models/{dataset}/{method}/seed{seed}/model.pt",
        judge="results/judges/{dataset}/judge.pt",
        dataset="results/data/{dataset}.h5",
    output:
        csv="results/metrics/{dataset}/{method}/seed{seed}_diagnostics.csv",
        png=report(
            "results/metrics/{dataset}/{method}/seed{seed}_probes.png",
            category="Diagnostics",
            caption="../report/probes.rst",
        ),
    log:
        "logs/diagnose_model/{dataset}_{method}_seed{seed}.log",
    benchmark:
        "benchmarks/diagnose_model/{dataset}_{method}_seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        evaluate=config["evaluate"],
        seed=config["seed"],
    script:
        "../scripts/diagnose_model.py"


rule plot_figures:
    """Swap grid and fixed-latent generations of one model (S3VAE Fig. 4 and 7a)."""
    input:
        model="results/models/{dataset}/{method}/seed0/model.pt",
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
        model="results/models/{dataset}/{method}/seed0/model.pt",
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
