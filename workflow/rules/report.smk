rule make_table:
    """A results table (its datasets: config table_datasets): every model's metrics, judge accuracy, published rows.

    The dataset files give each dataset's title and generation directions (their `protocol` attribute).
    """
    input:
        datasets=datasets_of_table,
        metrics=metrics_of_table,
        diagnostics=diagnostics_of_table,
        judges=judge_accuracies_of_table,
        published="workflow/published/{table}.csv",
    output:
        output_csv=report(
            "results/tables/{table}.csv",
            category="Tables",
            labels={"table": "{table}", "file": "csv"},
        ),
        output_md="results/tables/{table}.md",
        output_html=report(
            "results/tables/{table}.html",
            category="Tables",
            caption="../report/table.rst",
            labels={"table": "{table}", "file": "rendered"},
        ),
    log:
        "logs/make_table/{table}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    params:
        judge_bars=config["judge"]["min_accuracy"],
        left_out=left_out_of_table,
    script:
        "../scripts/stage.py"


rule make_table3:
    """Table 3 (S3VAE) / Table 2 (DSVAE): every audio model's EERs beside the published rows.

    The voice-conversion figures are inputs so that one target builds every audio result.
    """
    input:
        conversions_of_all_audio_models,
        verification=verification_of_all_audio_models,
        published="workflow/published/table3.csv",
    output:
        output_csv=report(
            "results/tables/table3.csv",
            category="Tables",
            labels={"table": "table3", "file": "csv"},
        ),
        output_md="results/tables/table3.md",
        output_html=report(
            "results/tables/table3.html",
            category="Tables",
            caption="../report/table3.rst",
            labels={"table": "table3", "file": "rendered"},
        ),
    log:
        "logs/make_table3/table3.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    script:
        "../scripts/stage.py"


rule plot_figures:
    """Swap grid and fixed-latent generations of one model (S3VAE Fig. 4 and 7a)."""
    input:
        model="results/models/{dataset}/{method}/seed0/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        swap=report(
            "results/figures/{dataset}/{method}_swap.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/swap.rst",
            labels={"model": "{method}", "figure": "swap"},
        ),
        generation=report(
            "results/figures/{dataset}/{method}_generation.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/generation.rst",
            labels={"model": "{method}", "figure": "generation"},
        ),
    log:
        "logs/plot_figures/{dataset}_{method}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule plot_latent_space:
    """The unordered model's decodings over its z plane for two identities (Fig. 3) and a z trace (Fig. 4b)."""
    input:
        model="results/models/{dataset}/{method}/seed0/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        grid=report(
            "results/figures/{dataset}/{method}_zgrid.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/zgrid.rst",
            labels={"model": "{method}", "figure": "z grid"},
        ),
        trace=report(
            "results/figures/{dataset}/{method}_ztrace.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/ztrace.rst",
            labels={"model": "{method}", "figure": "z trace"},
        ),
    log:
        "logs/plot_latent_space/{dataset}_{method}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule convert_voices:
    """Voice conversion (DSVAE Fig. 6): swap z_f between two speakers; spectrograms and Griffin-Lim WAVs."""
    input:
        model="results/models/{dataset}/{method}/z{dim}/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        figure=report(
            "results/figures/{dataset}/{method}/z{dim}_conversion.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/conversion.rst",
            labels={"model": "{method}", "figure": "voice conversion z{dim}"},
        ),
        wav_dir=directory("results/figures/{dataset}/{method}/z{dim}_conversion"),
    log:
        "logs/convert_voices/{dataset}_{method}_z{dim}.log",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        device=config["device"],
    script:
        "../scripts/stage.py"


rule plot_landmarks:
    """The landmark labels on one test clip: frames with the points the distances read, the three curves."""
    input:
        dataset="results/data/{dataset}.h5",
        labels="results/labels/{dataset}/landmarks.h5",
    output:
        output=report(
            "results/figures/{dataset}/landmarks.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/landmarks.rst",
            labels={"figure": "landmarks"},
        ),
    log:
        "logs/plot_landmarks/{dataset}.log",
    conda:
        "../../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/stage.py"


rule plot_flow_directions:
    """The flow-direction labels of a character's left- and right-facing walk, which should mirror each other."""
    input:
        dataset="results/data/{dataset}.h5",
        labels="results/labels/{dataset}/flow.h5",
    output:
        output=report(
            "results/figures/{dataset}/flow_directions.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/flow_directions.rst",
            labels={"figure": "flow directions"},
        ),
    log:
        "logs/plot_flow_directions/{dataset}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/stage.py"
