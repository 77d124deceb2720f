# The three training stages of one fold (SPEC §3). Each stage's params are exactly its
# own merged hyperparameters, so editing a stage-N value reruns stage N and what follows.
# A variant trains only the stages it changes: a stage's input checkpoint comes from the
# variant that owns the previous stage (common.smk, checkpoint_file).
# With rounds > 1, stage 1 -> 2 -> 3 repeats: rounds 1..R-1 write under round<r>/ (rules
# train_stageN_round), the last round the stage's usual files (rules train_stageN).
# Resumable per-epoch state lives in state_stageN/, not a declared output: a failed job
# keeps it and the rerun continues from the last finished epoch.

for stage, folder in itertools.product(expmap.config.STAGES, ("", "round{round}/")):

    rule:
        name:
            f"train_stage{stage}" + ("_round" if folder else "")
        input:
            unpack(stage_inputs(stage, in_round_folder=bool(folder))),
        output:
            checkpoint=f"{RUN}/{folder}stage{stage}.pt",
            metrics=f"{RUN}/{folder}stage{stage}_metrics.csv",
        log:
            f"{LOGS}/{folder}train_stage{stage}.log",
        benchmark:
            f"{BENCHMARK_TABLES}/{folder}train_stage{stage}.tsv"
        conda:
            "../../envs/expmap.yaml"
        threads: TRAIN_THREADS
        resources:
            **stage_resources(stage),
        params:
            **stage_params(stage, folder),
        script:
            "../scripts/train.py"
