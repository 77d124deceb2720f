# Raw download -> the prepared store of one dataset (faces, manifest with folds).


rule prepare:
    output:
        manifest=f"{PREPARED}/manifest.csv",
        classes=f"{PREPARED}/classes.txt",
        images=f"{PREPARED}/images.npy",
        report=f"{PREPARED}/report.json",
    log:
        "results/{dataset}/logs/prepare.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare.tsv"
    conda:
        "../../envs/expmap.yaml"
    threads: PREPARE_THREADS
    params:
        settings=adapter_settings,
    script:
        "../scripts/prepare.py"
