# One record per finished dataset and variant; the tables from every record on disk (the
# paper's table with ours beside "Ours (paper)", the ablation, the interpretability
# measures, the variants); the figures of each dataset and variant.


rule record:
    input:
        unpack(record_inputs),
    output:
        RECORD,
    log:
        "results/{dataset}/logs/{variant}/record.log",
    conda:
        "../../envs/expmap.yaml"
    params:
        settings=record_settings,
    script:
        "../scripts/record.py"


# Reads every record under results/, not only this run's: the table grows run by run.
rule tables:
    input:
        this_run_records,
    output:
        **table_files(),
    log:
        "results/logs/tables.log",
    conda:
        "../../envs/expmap.yaml"
    params:
        current=current_configurations,
    script:
        "../scripts/tables.py"


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
