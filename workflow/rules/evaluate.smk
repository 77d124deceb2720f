# Predictions and accuracies of one fold's test set: the EPMG head (the paper's number)
# and the EFE head after stages 1 and 2 (the ablation); the interpretability measures, and
# samples of masks and pattern maps for the figures.


rule evaluate:
    input:
        unpack(prepared_files),
        stage1=stage_checkpoint(1),
        stage2=stage_checkpoint(2),
        stage3=stage_checkpoint(3),
    output:
        predictions=f"{RUN}/predictions.csv",
        summary=f"{RUN}/summary.json",
        maps=f"{RUN}/maps.npz",
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCHMARK_TABLES}/evaluate.tsv"
    conda:
        "../../envs/expmap.yaml"
    threads: EVALUATE_THREADS
    resources:
        gpu=1,
    params:
        seed=replicate_seed,
    script:
        "../scripts/evaluate.py"
