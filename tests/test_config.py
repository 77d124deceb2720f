"""Config merging and validation (expmap.config) on the project's own config.yaml."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from expmap import config as cfg

REPO = Path(__file__).resolve().parents[1]
SCHEMA = cfg.read_schema(REPO / "workflow/schemas/config.schema.yaml")
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
PAPER_PER_DATASET = {  # SPEC §2-3
    "ckplus": {"lambda4": 1e-4, "lambda5": 1e-4, "t": 8},
    "oulu_casia": {"lambda4": 60, "lambda5": 40, "t": 8},
    "rafdb": {"lambda4": 60, "lambda5": 40, "t": 30},
    "affectnet": {"lambda4": 1e-4, "lambda5": 1e-4, "t": 30},
}


def merged(change=None):
    config = copy.deepcopy(CONFIG)
    if change:
        change(config)
    return cfg.load(config, SCHEMA)


def error_of(change) -> str:
    with pytest.raises(cfg.ConfigError) as raised:
        merged(change)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_every_stage_of_every_dataset_has_each_of_its_keys():
    keys = cfg.stage_keys(SCHEMA)
    for name, dataset in merged()["datasets"].items():
        for stage in cfg.STAGES:
            assert sorted(dataset["train"][f"stage{stage}"]) == keys[stage], (name, stage)
        assert set(dataset["model"]) == {"width", "weights", "batch_norm"}


def test_stage_keys_are_the_training_library_s():
    from expmap.train import HYPERPARAMETERS

    for stage, keys in cfg.stage_keys(SCHEMA).items():
        assert keys == sorted(f.name for f in dataclasses.fields(HYPERPARAMETERS[stage]))


def test_schema_minimums_of_the_synthetic_options_are_the_adapter_s():
    from expmap.data.adapters.synthetic import MINIMUM

    defs = SCHEMA["$defs"]
    properties = defs["options_synthetic"]["properties"]
    resolved = {key: defs[spec["$ref"].rsplit("/", 1)[1]] if "$ref" in spec else spec
                for key, spec in properties.items()}
    assert {key: spec.get("minimum", 0) for key, spec in resolved.items()} == MINIMUM


def test_schema_adapters_are_the_registry_s():
    from expmap.data.adapters import ADAPTER_MODULES

    assert sorted(SCHEMA["$defs"]["dataset"]["properties"]["adapter"]["enum"]) == \
        sorted(ADAPTER_MODULES)


def test_every_key_an_error_message_names_is_in_the_schema():
    """Messages that name a config key (datasets.<dataset>.<key>...) name one that exists."""
    import re

    defs = SCHEMA["$defs"]
    named = re.compile(r"datasets\.([a-z_]+)\.([a-z_]+)(?:\.([a-z_0-9]+))?")
    sources = [p for folder in ("src", "workflow") for p in (REPO / folder).rglob("*")
               if p.suffix in (".py", ".smk")]
    found = 0
    for path in sources:
        for dataset, key, sub in named.findall(path.read_text()):
            if dataset not in CONFIG["datasets"]:
                continue  # a pattern such as datasets.{name}, not a literal key
            found += 1
            assert key in defs["dataset"]["properties"], (path.name, dataset, key)
            if key == "options" and sub:
                adapter = CONFIG["datasets"][dataset]["adapter"]
                assert sub in defs[f"options_{adapter}"]["properties"], (path.name, sub)
    assert found  # the check saw at least one literal key


def test_schema_choices_are_the_training_library_s():
    from expmap.train import CHOICES

    groups = {name: group for name, group in SCHEMA["$defs"].items() if name.startswith("hp_")}
    enums = {key: tuple(spec["enum"]) for group in groups.values()
             for key, spec in group["properties"].items() if "enum" in spec}
    assert enums == CHOICES


def overlay(config: dict, layer: dict) -> None:
    """Merge an overlay into config as Snakemake merges a --configfile."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            overlay(config[key], value)
        else:
            config[key] = value


def test_the_paper_s_formulation_is_one_overlay_away():
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    for name, dataset in merged(lambda c: overlay(c, paper))["datasets"].items():
        stage2, stage3 = dataset["train"]["stage2"], dataset["train"]["stage3"]
        for stage in (stage2, stage3):
            assert (stage["optimizer"], stage["distance"], stage["mining"],
                    stage["clipping_scope"]) == ("sgd", "squared", "hardest", "model"), name
        assert (stage2["emr_lr"], stage2["emr_init"]) == (None, "uniform")
        assert stage3["decoder_init"] == "pytorch"
        assert (stage3["pattern_target"], stage3["decoder_lr"]) == ("input", None)
        assert (stage3["beta_scale"], stage3["pattern_gradient"]) == ("map", "encoder")
    assert error_of(lambda c: c["defaults"]["train"]["stage3"].update({"optimizer": "adamw"})) \
        == "defaults.train.stage3.optimizer = 'adamw': must be one of sgd, adam"


def test_the_real_faces_recipe_trains_a_folder_from_scratch_on_every_fold():
    recipe = yaml.safe_load((REPO / "configs/real-faces.yaml").read_text())
    mine = merged(lambda c: overlay(c, recipe))["datasets"]["mine"]
    assert (mine["adapter"], mine["options"]["folds"]) == ("imagefolder", 10)
    assert mine["model"]["weights"] is None and "run_folds" not in mine
    stage3 = mine["train"]["stage3"]
    assert (stage3["pattern_target"], stage3["pattern_gradient"], stage3["beta_scale"]) == (
        "input", "decoder", "pixel")


def test_the_paper_s_values_reach_each_benchmark():
    datasets = merged()["datasets"]
    for name, values in PAPER_PER_DATASET.items():
        train = datasets[name]["train"]
        assert train["stage3"]["lambda4"] == values["lambda4"]
        assert train["stage3"]["lambda5"] == values["lambda5"]
        assert train["stage2"]["t"] == train["stage3"]["t"] == values["t"]
        assert "t" not in train["stage1"]
        assert train["stage1"]["lr"] == 1e-3 and train["stage2"]["lr"] == 1e-4
        assert train["stage2"]["lambda1"] == 2 and train["stage2"]["alpha"] == 0.2


def test_later_layers_win():
    def layers(config):
        config["defaults"]["train"]["all_stages"]["momentum"] = 0.5
        config["defaults"]["train"]["stage2"]["momentum"] = 0.6
        config["datasets"]["ckplus"]["train"]["all_stages"]["momentum"] = 0.7
        config["datasets"]["ckplus"]["train"]["stage3"]["momentum"] = 0.8

    datasets = merged(layers)["datasets"]
    ckplus = datasets["ckplus"]["train"]
    assert [ckplus[f"stage{s}"]["momentum"] for s in cfg.STAGES] == [0.7, 0.7, 0.8]
    rafdb = datasets["rafdb"]["train"]
    assert [rafdb[f"stage{s}"]["momentum"] for s in cfg.STAGES] == [0.5, 0.6, 0.5]


def test_canonical_json_sorts_keys():
    assert cfg.canonical_json({"b": 1, "a": [1.0e-4]}) == '{"a":[0.0001],"b":1}'
    assert json.loads(cfg.canonical_json({"b": 1, "a": 2})) == {"a": 2, "b": 1}


def test_folds_k_fold_official_split_and_subset():
    datasets = merged()["datasets"]
    assert cfg.fold_names(datasets["ckplus"]) == [f"fold{i}" for i in range(10)]
    assert cfg.fold_names(datasets["rafdb"]) == ["test"]
    assert cfg.run_folds(datasets["synthetic"]) == datasets["synthetic"]["run_folds"]
    assert cfg.run_folds(datasets["oulu_casia"]) == cfg.fold_names(datasets["oulu_casia"])


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["defaults"]["train"]["stage3"].update(lamda6=1),
     "defaults.train.stage3.lamda6: unknown key; did you mean lambda6?"),
    (lambda c: c["datasets"]["rafdb"]["train"]["all_stages"].update(tt=3),
     "datasets.rafdb.train.all_stages.tt: unknown key"),
    (lambda c: c["datasets"]["ckplus"]["train"]["stage3"].update(lambda4="1e-4"),
     "datasets.ckplus.train.stage3.lambda4 = '1e-4': must be of type number"),
    (lambda c: c["datasets"]["ckplus"]["train"]["stage3"].update(lambda5=-40),
     "datasets.ckplus.train.stage3.lambda5 = -40: must be >= 0"),
    (lambda c: c["defaults"]["train"]["stage1"].update(lr=0),
     "defaults.train.stage1.lr = 0: must be > 0"),
    (lambda c: c["defaults"]["train"]["stage1"].update(epochs=True),
     "defaults.train.stage1.epochs = True: must be of type integer"),
    (lambda c: c["datasets"]["ckplus"]["train"]["all_stages"].update(schedule="step"),
     "datasets.ckplus.train.all_stages.schedule = 'step': must be one of constant, cosine"),
    (lambda c: c.update(benchmarks=["synthetic", "kplus"]),
     "benchmarks: unknown dataset 'kplus'; did you mean ckplus?"),
    (lambda c: c["datasets"]["ckplus"]["train"]["stage3"].pop("lambda4"),
     "datasets.ckplus.train.stage3.lambda4: not set; give it in defaults.train.stage3"),
    (lambda c: c["datasets"]["ckplus"]["options"].update(frame=3),
     "datasets.ckplus.options.frame: unknown key; did you mean frames?"),
    (lambda c: c["datasets"]["oulu_casia"]["options"].update(illumination=["IR"]),
     "datasets.oulu_casia.options.illumination.0 = 'IR': must be one of VL, NI"),
    (lambda c: c["datasets"]["ckplus"]["options"].pop("folds"),
     "datasets.ckplus.options.folds: missing"),
    (lambda c: c["datasets"]["synthetic"].update(run_folds=["fold9"]),
     "datasets.synthetic.run_folds: fold9 is not a fold of synthetic"),
    (lambda c: c["defaults"]["model"].update(width="wide"),
     "defaults.model.width = 'wide': must be of type number"),
    (lambda c: c.update(benchmark=["synthetic"]),
     "benchmark: unknown key; did you mean benchmarks?"),
])
def test_a_mistake_is_one_line_naming_key_and_reason(change, message):
    assert error_of(change).startswith(message)


def test_classes_are_checked_against_the_data():
    cfg.check_classes("ckplus", None, ["a", "b"])
    cfg.check_classes("ckplus", ["a", "b"], ["a", "b"])
    with pytest.raises(cfg.ConfigError, match=r"^datasets.ckplus.classes = \['b', 'a'\]"):
        cfg.check_classes("ckplus", ["b", "a"], ["a", "b"])


REPORT_CODE = {"stage2": {"lambda2": 100.0, "lambda3": 100.0, "frozen_convs": 5},
               "datasets": ["ckplus", "rafdb"]}


def test_a_variant_is_the_default_with_its_overlay_and_owns_only_what_it_changes():
    def change(config):
        config["variants"] = {"report_code": REPORT_CODE,
                              "sharper": {"all_stages": {"lambda4": 0.5}}}
    runs = cfg.variant_runs(merged(change), SCHEMA)
    assert list(runs["ckplus"]) == ["default", "report_code", "sharper"]
    assert "report_code" not in runs["oulu_casia"]  # restricted by its datasets
    report = runs["ckplus"]["report_code"]["train"]
    assert report["stage2"]["frozen_convs"] == 5
    assert report["stage3"] == runs["ckplus"]["default"]["train"]["stage3"]
    assert runs["ckplus"]["sharper"]["train"]["stage3"]["lambda4"] == 0.5
    owners = {variant: [cfg.stage_owner(runs["ckplus"], variant, stage) for stage in (1, 2, 3)]
              for variant in runs["ckplus"]}
    assert owners == {"default": ["default"] * 3,
                      "report_code": ["default", "report_code", "report_code"],
                      "sharper": ["default", "default", "sharper"]}
    assert cfg.differences(runs["ckplus"], "report_code") == {
        "stage2.lambda2": 100.0, "stage2.lambda3": 100.0, "stage2.frozen_convs": 5}


@pytest.mark.parametrize("variant, line", [
    ({"stage2": {"lamda2": 1.0}}, "variants.v.stage2.lamda2: unknown key; did you mean lambda2?"),
    ({"stage4": {}}, "variants.v.stage4: unknown key; did you mean stage3?"),
])
def test_a_wrong_variant_is_one_line(variant, line):
    message = error_of(lambda config: config.update(variants={"v": variant}))
    assert message.startswith(line)


def test_a_variant_of_an_unknown_dataset_is_one_line():
    config = merged(lambda c: c.update(variants={"v": {"datasets": ["ckpuls"]}}))
    with pytest.raises(cfg.ConfigError, match="^variants.v.datasets: unknown dataset 'ckpuls'; "
                                               "did you mean ckplus"):
        cfg.variant_runs(config, SCHEMA)


def test_a_sweep_is_a_variant_per_combination_named_by_its_values():
    def change(config):
        config["sweeps"] = {"maps": {"stage3.lambda4": [1.0e-4, 60], "stage3.lambda5": [40],
                                     "datasets": ["ckplus"]},
                            "sampler": {"stage1.sampler": ["balanced"]}}
    config = merged(change)
    runs = cfg.variant_runs(config, SCHEMA)
    assert list(runs["ckplus"]) == ["default", "report_code", "lambda4=0.0001+lambda5=40",
                                    "lambda4=60+lambda5=40", "sampler=balanced"]
    assert list(runs["rafdb"]) == ["default", "report_code", "sampler=balanced"]
    assert runs["ckplus"]["lambda4=60+lambda5=40"]["train"]["stage3"]["lambda4"] == 60
    assert cfg.stage_owner(runs["ckplus"], "lambda4=60+lambda5=40", 2) == "default"


@pytest.mark.parametrize("sweep, line", [
    ({"stage3.lamda4": [1]}, "sweeps.s.stage3.lamda4: unknown key; did you mean lambda4?"),
    ({"stage3.lambda4": [-1]}, "sweeps.s.stage3.lambda4 = -1: must be >= 0"),
    ({"stage4.lambda4": [1]}, "sweeps.s.stage4.lambda4: unknown key (known: "
                              "<all_stages|stage1|stage2|stage3|model>.<key>, datasets)"),
    ({"stage3.lambda4": []}, "sweeps.s.stage3.lambda4: [] should be non-empty"),
    ({"stage3.lambda4": [1], "datasets": ["ckpuls"]},
     "sweeps.s.datasets: unknown dataset 'ckpuls'; did you mean ckplus?"),
])
def test_a_wrong_sweep_is_one_line(sweep, line):
    assert error_of(lambda config: config.update(sweeps={"s": sweep})).startswith(line)


def test_a_sweep_that_names_an_existing_variant_is_one_line():
    def change(config):
        config["variants"] = {"lambda4=1": {"stage3": {"lambda4": 2}}}
        config["sweeps"] = {"s": {"stage3.lambda4": [1]}}
    assert error_of(change).startswith("sweeps.s: makes the variant lambda4=1, which another")


def test_configurations_cover_every_dataset_and_variant_with_its_data():
    config = merged(lambda c: c["variants"].update(sharper={"stage3": {"lambda4": 0.5}}))
    found = cfg.configurations(config, SCHEMA)
    assert {"synthetic/default", "synthetic/sharper", "mine/sharper",
            "ckplus/report_code"} <= set(found)
    assert "synthetic/report_code" not in found  # report_code names its datasets
    assert found["synthetic/sharper"]["train"]["stage3"]["lambda4"] == 0.5
    assert found["synthetic/default"]["data"]["adapter"] == "synthetic"


@pytest.mark.parametrize("change, line", [
    (lambda c: c["datasets"]["ckplus"]["train"].update(stage2={"rounds": 2}),
     "datasets.ckplus.train: rounds differs between stages (stage1 1, stage2 2, stage3 1); "
     "set it once, in all_stages"),
    (lambda c: c["datasets"]["synthetic"]["train"]["all_stages"].update(rounds=11),
     "datasets.synthetic.train.stage2: rounds = 11 is more than its epochs (10)"),
    (lambda c: c["variants"].update(v={"all_stages": {"rounds": 25}, "datasets": ["rafdb"]}),
     "variants.v (on rafdb).stage2: rounds = 25 is more than its epochs (20)"),
])
def test_wrong_rounds_are_one_line(change, line):
    def apply(config):
        config["benchmarks"] = ["ckplus", "rafdb", "synthetic"]
        change(config)
    with pytest.raises(cfg.ConfigError) as raised:
        config = merged(apply)
        cfg.variant_runs(config, SCHEMA)
    assert str(raised.value).startswith(line)


def test_after_the_first_round_a_stage_depends_on_every_stage():
    config = merged(lambda c: c["variants"].update(
        twice={"all_stages": {"rounds": 2}},
        sharper={"stage3": {"lambda4": 0.5}, "all_stages": {"rounds": 2}}))
    runs = cfg.variant_runs(config, SCHEMA)["ckplus"]
    assert [cfg.stage_owner(runs, "sharper", stage, 1) for stage in (1, 2, 3)] == [
        "twice", "twice", "sharper"]
    assert [cfg.stage_owner(runs, "sharper", stage, 2) for stage in (1, 2, 3)] == [
        "sharper"] * 3


def test_seeds_given_on_the_command_line_are_integers_and_each_replicate_moves_the_seed():
    config = merged(lambda c: c.update(seeds=["0", "1", "2"]))  # --config 'seeds=[0,1,2]'
    assert config["seeds"] == [0, 1, 2]
    assert error_of(lambda c: c.update(seeds=["a"])).startswith(
        "seeds.0 = 'a': must be of type integer")
    assert "non-unique" in error_of(lambda c: c.update(seeds=[1, 1]))
    hp = config["datasets"]["ckplus"]["train"]["stage1"]
    assert cfg.seeded(hp, 0) == hp
    assert cfg.seeded(hp, 2)["seed"] == hp["seed"] + 2
    assert [cfg.replicate_folder(seed) for seed in (0, 2)] == ["", "seed2/"]
    assert [cfg.replicate_seed(cfg.replicate_folder(seed)) for seed in (0, 2)] == [0, 2]


def test_a_setting_added_at_its_old_behaviour_leaves_finished_stages_finished():
    """A stage's params leave out each later-added setting at the value config.yaml gives
    it (the behaviour from before it existed), so Snakemake reruns no finished stage; the
    stage reads it back. Another value is in the params, and reruns that stage."""
    defaults = CONFIG["defaults"]["train"]
    for stage, added in cfg.ADDED_SETTINGS.items():
        assert {key: defaults[f"stage{stage}"][key] for key in added} == added
        hp = merged()["datasets"]["ckplus"]["train"][f"stage{stage}"]
        params = cfg.stage_params(stage, hp)
        assert not set(added) & set(params)
        assert cfg.with_added_settings(stage, params) == hp
    changed = {**hp, "beta_scale": "pixel"}
    assert cfg.stage_params(3, changed)["beta_scale"] == "pixel"
    assert cfg.with_added_settings(3, cfg.stage_params(3, changed)) == changed
