# The paper's table (SPEC §5) with this run's results beside "Ours (paper)".


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
