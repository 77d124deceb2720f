# expmap: Zhang & Yu (2022), facial expression recognition via expression pattern-maps.
# prepare -> train_stage1 (EFE) -> train_stage2 (EMR) -> train_stage3 (EPMG) -> evaluate
# -> aggregate, per dataset and fold. See README.md; the config is config.yaml.

from snakemake.utils import min_version

min_version("9.27")


configfile: f"{workflow.basedir}/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
