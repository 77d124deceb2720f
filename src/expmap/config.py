"""The pipeline's config: validation, merging of defaults, and what each rule is given.

The config as written has `defaults` (model, train) and `datasets.<name>` entries that
override them. `load` validates it against the JSON schema, merges every dataset's
hyperparameters so that each sits at `datasets.<name>.train.stage1|stage2|stage3.<key>`
(and its model at `datasets.<name>.model`), and checks the result. Errors a user can
make raise ConfigError, whose message is one line naming the key and the reason.

Imports no torch: the Snakefile calls this at start-up.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
from pathlib import Path

import jsonschema
import yaml

from expmap.errors import UserError

STAGES = (1, 2, 3)
# Settings added after results existed, each at the value that keeps the behaviour from
# before it: a stage's params leave it out at that value, so finished stages stay finished
# (Snakemake reruns a job whose params change), and the stage reads it back from here.
ADDED_SETTINGS = {1: {"min_steps": 0},
                  3: {"beta_scale": "map", "pattern_gradient": "encoder"}}


class ConfigError(UserError):
    """A config a user wrote wrong: the message is the one line to show."""


def read_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def load(config: dict, schema: dict) -> dict:
    """Validate the config as written and return it merged (a new dict)."""
    config = {**config, "seeds": _integers(config.get("seeds"))}
    _validate(config, schema)
    merged = copy.deepcopy(config)
    for name in merged["benchmarks"]:
        if name not in merged["datasets"]:
            raise ConfigError(f"benchmarks: unknown dataset {name!r}"
                              f"{_suggestion(name, merged['datasets'])} "
                              f"(datasets: {', '.join(sorted(merged['datasets']))})")
    merged["variants"] = {**merged.get("variants", {}),
                          **sweep_variants(merged.pop("sweeps", {}), merged, schema)}
    keys = stage_keys(schema)
    for name, dataset in merged["datasets"].items():
        dataset["model"] = {**config["defaults"]["model"], **dataset.get("model", {})}
        dataset["train"] = {f"stage{stage}": _merged_stage(config, name, stage, keys[stage])
                            for stage in STAGES}
        _check_run_folds(name, dataset)
        check_rounds(f"datasets.{name}.train", dataset["train"])
    _validate(merged, schema)
    return merged


def _integers(values):
    """--config 'seeds=[0,1,2]' arrives as ['0', '1', '2']: the integers they spell (other
    values unchanged, for validation to name)."""
    if not isinstance(values, list):
        return values
    return [int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in values]


def load_files(paths, schema: dict) -> dict:
    """The config files `paths` laid over each other in order, nested mappings key by key
    (as snakemake's --configfile does), then `load`ed."""
    config: dict = {}
    for path in paths:
        config = overlay(config, yaml.safe_load(Path(path).read_text()) or {})
    return load(config, schema)


def overlay(base: dict, update: dict) -> dict:
    """`base` with `update` merged in: nested mappings key by key, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = overlay(merged[key], value) if nested else value
    return merged


def stage_keys(schema: dict) -> dict[int, list[str]]:
    """The hyperparameter keys each stage takes, read from the schema's stage definitions."""
    defs = schema["$defs"]
    return {stage: sorted(key for group in defs[f"stage{stage}"]["allOf"]
                          for key in defs[group["$ref"].rsplit("/", 1)[1]]["properties"])
            for stage in STAGES}


def _merged_stage(config: dict, name: str, stage: int, keys: list[str]) -> dict:
    layers = [("defaults.train", config["defaults"].get("train", {})),
              (f"datasets.{name}.train", config["datasets"][name].get("train", {}))]
    merged = {}
    for _, train in layers:
        merged.update({k: v for k, v in train.get("all_stages", {}).items() if k in keys})
        merged.update(train.get(f"stage{stage}", {}))
    missing = [key for key in keys if key not in merged]
    if missing:
        places = " or ".join(f"{prefix}.{block}" for prefix, _ in layers
                             for block in (f"stage{stage}", "all_stages"))
        raise ConfigError(f"datasets.{name}.train.stage{stage}.{missing[0]}: not set; "
                          f"give it in {places}")
    return merged


DEFAULT_VARIANT = "default"  # the configuration as written, without any variant


def replicate_folder(seed: int) -> str:
    """Where replicate `seed` (an entry of `seeds`) keeps its folds inside a variant's
    folder: seed 0 in the folder itself (where runs were before seeds existed), seed s in
    seed<s>/."""
    return f"seed{seed}/" if seed else ""


def replicate_seed(folder: str) -> int:
    """The replicate seed of a replicate_folder."""
    return int(folder.removeprefix("seed").rstrip("/")) if folder else 0


def seeded(hyperparameters: dict, seed: int) -> dict:
    """A stage's hyperparameters for replicate `seed`: its seed moved on by `seed`."""
    return {**hyperparameters, "seed": hyperparameters["seed"] + seed}


def sweep_variants(sweeps: dict, config: dict, schema: dict) -> dict[str, dict]:
    """The variants of `sweeps:`: one per combination of each grid's values, named by them
    ("lambda4=60", "lambda4=60+lambda5=40"), each checked as a variant overlay."""
    found: dict[str, dict] = {}
    variants = config.get("variants", {})
    for sweep, grid in sweeps.items():
        for name in grid.get("datasets", []):
            if name not in config["datasets"]:
                raise ConfigError(f"sweeps.{sweep}.datasets: unknown dataset {name!r}"
                                  f"{_suggestion(name, config['datasets'])}")
        paths = [path for path in grid if path != "datasets"]
        for values in itertools.product(*(grid[path] for path in paths)):
            name = "+".join(f"{path.split('.', 1)[1]}={_value_name(value)}"
                            for path, value in zip(paths, values))
            overlay = {"datasets": grid["datasets"]} if "datasets" in grid else {}
            for path, value in zip(paths, values):
                block, key = path.split(".", 1)
                overlay.setdefault(block, {})[key] = value
            if name in variants or name in found:
                raise ConfigError(f"sweeps.{sweep}: makes the variant {name}, which another "
                                  "sweep or variants: names already; drop one of them")
            _validate(overlay, {"$defs": schema["$defs"], **schema["$defs"]["variant"]},
                      where=f"sweeps.{sweep}")
            found[name] = overlay
    return found


def _value_name(value) -> str:
    """A value as a variant name shows it: 60, 0.0001, balanced, true."""
    return value if isinstance(value, str) else json.dumps(value)


def variant_runs(config: dict, schema: dict, names: list[str] | None = None
                 ) -> dict[str, dict[str, dict]]:
    """dataset -> variant -> {"model", "train"} of a `load`ed config, for the datasets
    `names` (default: the benchmarks): "default" first, then each entry of `variants:` that
    applies to the dataset (its `datasets`, else all), its overlay laid on the default's
    merged values as a dataset's own train block is."""
    keys = stage_keys(schema)
    names = config["benchmarks"] if names is None else names
    runs = {name: {DEFAULT_VARIANT: {"model": config["datasets"][name]["model"],
                                     "train": config["datasets"][name]["train"]}}
            for name in names}
    for variant, overlay in config.get("variants", {}).items():
        for name in overlay.get("datasets", names):
            if name not in config["datasets"]:
                raise ConfigError(f"variants.{variant}.datasets: unknown dataset {name!r}"
                                  f"{_suggestion(name, config['datasets'])}")
            if name in runs:
                runs[name][variant] = _variant(runs[name][DEFAULT_VARIANT], overlay, keys)
                check_rounds(f"variants.{variant} (on {name})", runs[name][variant]["train"])
    return runs


def check_rounds(where: str, train: dict) -> None:
    """`rounds` is one number for the three stages, and no stage has fewer epochs."""
    rounds = {f"stage{stage}": train[f"stage{stage}"]["rounds"] for stage in STAGES}
    if len(set(rounds.values())) > 1:
        found = ", ".join(f"{block} {value}" for block, value in rounds.items())
        raise ConfigError(f"{where}: rounds differs between stages ({found}); set it once, "
                          "in all_stages")
    for block, hp in train.items():
        if hp["rounds"] > hp["epochs"]:
            raise ConfigError(f"{where}.{block}: rounds = {hp['rounds']} is more than its "
                              f"epochs ({hp['epochs']}): every round needs an epoch of each "
                              "stage; lower rounds or raise epochs")


def rounds_of(run: dict) -> int:
    """How many times a run repeats stage 1 -> 2 -> 3 (check_rounds made it one number)."""
    return run["train"]["stage1"]["rounds"]


def _variant(default: dict, overlay: dict, keys: dict[int, list[str]]) -> dict:
    shared = overlay.get("all_stages", {})
    return {"model": {**default["model"], **overlay.get("model", {})},
            "train": {f"stage{stage}": {**default["train"][f"stage{stage}"],
                                        **{k: v for k, v in shared.items() if k in keys[stage]},
                                        **overlay.get(f"stage{stage}", {})}
                      for stage in STAGES}}


def stage_owner(runs: dict[str, dict], variant: str, stage: int, round_: int = 1) -> str:
    """The variant whose stage-`stage` checkpoint of round `round_` `variant` uses: the first
    (default first) whose model and hyperparameters of stages 1 to `stage` (of all stages,
    after the first round) equal its own. A stage is thus trained once for every variant
    that gives it the same inputs."""
    last = stage if round_ == 1 else STAGES[-1]

    def inputs(name: str) -> str:
        run = runs[name]
        return canonical_json({"model": run["model"],
                               "train": [run["train"][f"stage{s}"] for s in range(1, last + 1)]})
    own = inputs(variant)
    return next(name for name in runs if inputs(name) == own)


def differences(runs: dict[str, dict], variant: str) -> dict:
    """The keys in which `variant` differs from the default, as "stageN.key" or "model.key"."""
    default, run = runs[DEFAULT_VARIANT], runs[variant]
    changed = {f"model.{k}": v for k, v in run["model"].items() if default["model"].get(k) != v}
    for block, values in run["train"].items():
        changed.update({f"{block}.{k}": v for k, v in values.items()
                        if default["train"][block].get(k) != v})
    return changed


def data_settings(dataset: dict) -> dict:
    """Everything of a dataset's entry that its adapter reads (the prepared store's inputs)."""
    return {"adapter": dataset["adapter"], "root": dataset.get("root"),
            "options": dataset.get("options", {}), "classes": dataset.get("classes")}


def configurations(config: dict, schema: dict) -> dict[str, dict]:
    """"<dataset>/<variant>" -> {"data", "model", "train"} for every dataset of a `load`ed
    config and every variant that applies to it: what a finished run's record is checked
    against (expmap.records)."""
    runs = variant_runs(config, schema, names=list(config["datasets"]))
    return {f"{name}/{variant}": {"data": data_settings(config["datasets"][name]), **run}
            for name, variants in runs.items() for variant, run in variants.items()}


def fold_names(dataset: dict) -> list[str]:
    """All folds of a merged dataset: fold0..fold<k-1> for k folds, else the official "test"."""
    folds = dataset.get("options", {}).get("folds")
    return [f"fold{i}" for i in range(folds)] if folds else ["test"]


def run_folds(dataset: dict) -> list[str]:
    """The folds this run trains and evaluates: `run_folds` when given, else all."""
    return dataset.get("run_folds") or fold_names(dataset)


def _check_run_folds(name: str, dataset: dict) -> None:
    folds = fold_names(dataset)
    for fold in dataset.get("run_folds", []):
        if fold not in folds:
            raise ConfigError(f"datasets.{name}.run_folds: {fold} is not a fold of {name} "
                              f"(folds: {folds[0]} ... {folds[-1]})")


def stage_params(stage: int, hyperparameters: dict) -> dict:
    """A stage's hyperparameters as its job's params: ADDED_SETTINGS at their values left out."""
    added = ADDED_SETTINGS.get(stage, {})
    return {key: value for key, value in hyperparameters.items()
            if key not in added or added[key] != value}


def with_added_settings(stage: int, hyperparameters: dict) -> dict:
    """stage_params' inverse: the left-out ADDED_SETTINGS back at their values."""
    return {**ADDED_SETTINGS.get(stage, {}), **hyperparameters}


def canonical_json(value) -> str:
    """One string per value, keys sorted: what a rule's params compare."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_classes(dataset: str, expected: list[str] | None, found: list[str]) -> None:
    """Stop when the prepared classes are not those datasets.<name>.classes promises."""
    if expected is not None and list(expected) != list(found):
        raise ConfigError(f"datasets.{dataset}.classes = {list(expected)}, but the data gives "
                          f"{list(found)} (in that order): correct the config or the options")


def _validate(config: dict, schema: dict, where: str = "") -> None:
    """Raise ConfigError with one line for the config's first error; `where` prefixes the
    key path (for a part validated on its own)."""
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    # A key whose value fails its type also counts as unevaluated: show the type error.
    typed = [e for e in errors if e.validator != "unevaluatedProperties"]
    error = jsonschema.exceptions.best_match(typed or errors)
    if error is not None:
        line = _one_line(error, schema)
        raise ConfigError(f"{where}.{line}" if where else line)


def _one_line(error: jsonschema.ValidationError, schema: dict) -> str:
    path = [str(part) for part in error.absolute_path]
    key = ".".join(path) or "config"
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        known = _known_keys(error.schema, schema)
        unknown = next(k for k in error.instance if k not in known)
        return (f"{'.'.join([*path, unknown])}: unknown key{_suggestion(unknown, known)}"
                f" (known: {', '.join(sorted(known))})")
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return f"{'.'.join([*path, missing])}: missing"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{key} = {error.instance!r}: must be of type {wanted}{_number_hint(error.instance)}"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{key} = {error.instance!r}: must be one of {allowed}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
                    "exclusiveMaximum": "<"}[error.validator]
        return f"{key} = {error.instance!r}: must be {relation} {error.validator_value}"
    return f"{key}: {error.message}"


def _number_hint(value) -> str:
    """Why a number arrives as a string: YAML's 1e-4, or a nested --config value."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return ("; write numbers unquoted and exponents with a dot (1.0e-4: YAML reads 1e-4 as "
            "a string); nested --config values arrive as strings: use a --configfile overlay")


def _known_keys(subschema: dict, schema: dict) -> list[str]:
    """Keys an object schema allows: its properties (a pattern's by its description) and
    those of the groups it refers to."""
    if "$ref" in subschema:
        subschema = schema["$defs"][subschema["$ref"].rsplit("/", 1)[1]]
    keys = list(subschema.get("properties", {}))
    keys += [pattern["description"] for pattern in subschema.get("patternProperties", {}).values()]
    for part in subschema.get("allOf", []):
        keys += _known_keys(part, schema)
    return keys


def _suggestion(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""
