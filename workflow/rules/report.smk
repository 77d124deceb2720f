# The paper's table (SPEC §5) with this run's results beside "Ours (paper)", the ablation
# and the interpretability measures; the figures of each dataset.


rule aggregate:
    input:
        unpack(summaries_by_dataset),
    output:
        csv=report(
            f"{TABLES}/accuracy.csv",
            caption="../report/accuracy_csv.rst",
            category="Accuracy",
        ),
        markdown=report(
            f"{TABLES}/accuracy.md",
            caption="../report/accuracy_md.rst",
            category="Accuracy",
        ),
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/expmap.yaml"
    script:
        "../scripts/aggregate.py"


rule variants_table:
    input:
        unpack(variant_summaries),
    output:
        csv=report(
            f"{TABLES}/variants.csv",
            caption="../report/variants.rst",
            category="Variants",
        ),
        markdown=f"{TABLES}/variants.md",
    log:
        "results/logs/variants_table.log",
    conda:
        "../../envs/expmap.yaml"
    params:
        differences=variant_differences(),
    script:
        "../scripts/variants_table.py"


rule module_tables:
    input:
        unpack(module_table_inputs),
    output:
        ablation_csv=report(
            f"{TABLES}/ablation.csv",
            caption="../report/ablation.rst",
            category="Ablation and interpretability",
        ),
        ablation_md=f"{TABLES}/ablation.md",
        interpretability_csv=report(
            f"{TABLES}/interpretability.csv",
            caption="../report/interpretability.rst",
            category="Ablation and interpretability",
        ),
        interpretability_md=f"{TABLES}/interpretability.md",
    log:
        "results/logs/module_tables.log",
    conda:
        "../../envs/expmap.yaml"
    params:
        datasets=BENCHMARKS,
    script:
        "../scripts/module_tables.py"


rule figures:
    input:
        unpack(figure_inputs),
    output:
        **{
            figure: report(
                FIGURE.replace("{figure}", figure),
                caption=f"../report/{figure}.rst",
                category="Figures",
                subcategory="{dataset}",
            )
            for figure in FIGURES
        },
    log:
        "results/{dataset}/logs/{variant}/figures.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/figures.tsv"
    conda:
        "../../envs/expmap.yaml"
    script:
        "../scripts/figures.py"
