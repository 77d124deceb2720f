# The three training stages of one fold (SPEC §3). Each stage's params are exactly its
# own merged hyperparameters, so editing a stage-N value reruns stage N and what follows.
# A variant trains only the stages it changes: a stage's input checkpoint comes from the
# variant that owns the previous stage (common.smk, owner).
# Resumable per-epoch state lives in state_stageN/, not a declared output: a failed job
# keeps it and the rerun continues from the last finished epoch.


rule train_stage1:
    input:
        unpack(stage1_inputs),
    output:
        checkpoint=f"{RUN}/stage1.pt",
        metrics=f"{RUN}/stage1_metrics.csv",
    log:
        f"{LOGS}/train_stage1.log",
    benchmark:
        f"{BENCHMARK_TABLES}/train_stage1.tsv"
    conda:
        "../../envs/expmap.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    params:
        stage=1,
        hyperparameters=stage_hyperparameters(1),
        model=model_settings,
        state_dir=f"{RUN}/state_stage1",
    script:
        "../scripts/train.py"


rule train_stage2:
    input:
        unpack(prepared_files),
        init=stage_checkpoint(1),
    output:
        checkpoint=f"{RUN}/stage2.pt",
        metrics=f"{RUN}/stage2_metrics.csv",
    log:
        f"{LOGS}/train_stage2.log",
    benchmark:
        f"{BENCHMARK_TABLES}/train_stage2.tsv"
    conda:
        "../../envs/expmap.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    params:
        stage=2,
        hyperparameters=stage_hyperparameters(2),
        state_dir=f"{RUN}/state_stage2",
    script:
        "../scripts/train.py"


rule train_stage3:
    input:
        unpack(prepared_files),
        init=stage_checkpoint(2),
    output:
        checkpoint=f"{RUN}/stage3.pt",
        metrics=f"{RUN}/stage3_metrics.csv",
    log:
        f"{LOGS}/train_stage3.log",
    benchmark:
        f"{BENCHMARK_TABLES}/train_stage3.tsv"
    conda:
        "../../envs/expmap.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    params:
        stage=3,
        hyperparameters=stage_hyperparameters(3),
        state_dir=f"{RUN}/state_stage3",
    script:
        "../scripts/train.py"
