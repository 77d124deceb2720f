"""The bad-input catalog: each mistake a user can make, through the entry point the user
meets (Snakemake's start-up checks, the prepare job, the training job), ends in one clear
line (what, where, the fix), with no traceback and nothing half-written.

Choices made here:
- files that cannot be used (a truncated JPEG, a label code out of range) are skipped and
  listed in the prepared store's report.json with their reason; the prepare goes on;
- images in other modes (grayscale, 16-bit, CMYK) are converted to 8-bit RGB, not refused;
- an empty class folder of an imagefolder dataset is refused: it would still count as a
  class of the model, which then could never predict it;
- a weights file that is not a plain state dict (a pickle that would run code, say) is
  refused without unpickling anything.

The disk cases mount a tmpfs (root only); they are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY, snakemake
from PIL import Image

NOTICES = ("Using workflow specific profile", "Config file ", "warning: ",
           "Assuming unrestricted shared filesystem usage")
STORE_FILES = ("manifest.csv", "classes.txt", "images.npy", "report.json",
               "images.npy.partial", "images.npy.progress", "regions.npy")


def case(workdir: Path, config: dict) -> tuple[Path, Path]:
    """The tiny overlay and `config` as one more overlay, written under `workdir`."""
    path = workdir / "case.yaml"
    path.write_text(yaml.safe_dump(config))
    return TINY, path


def console(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def startup_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What the workflow itself printed before stopping (Snakemake's notices left out)."""
    assert result.returncode != 0, console(result)
    assert "Traceback" not in console(result), console(result)
    return [line for line in console(result).splitlines()
            if line and not line.startswith(NOTICES)]


def job_error(result: subprocess.CompletedProcess, *parts: str) -> str:
    """The failed job's one line (shown on the console, and again where Snakemake prints the
    job's log): exactly one distinct `error:` line, holding each of `parts`, no traceback."""
    output = console(result)
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = {line for line in output.splitlines() if line.startswith("error: ")}
    assert len(lines) == 1, output
    line = lines.pop()
    for part in parts:
        assert part in line, line
    return line


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else []


def image(path: Path, pixels: np.ndarray, mode: str | None = None, fmt: str | None = None,
          ) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(pixels)
    (picture.convert(mode) if mode else picture).save(path, format=fmt)
    return path


def noise(seed: int, size=(64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def no_weights(benchmarks: list[str], datasets: dict) -> dict:
    return {"benchmarks": benchmarks, "defaults": {"model": {"weights": None}},
            "datasets": datasets}


# ---------------------------------------------------------------- raw data: start-up checks


def test_missing_root_and_wrong_layouts_stop_the_run_with_one_line_each(tmp_path):
    flat = tmp_path / "flat"  # images, but no class folders
    image(flat / "a.png", noise(0))
    image(flat / "b.png", noise(1))
    (tmp_path / "RAF" / "Image" / "aligned").mkdir(parents=True)  # no EmoLabel/
    result = snakemake(tmp_path, "-n", overlays=case(tmp_path, no_weights(
        ["mine", "rafdb", "synthetic"], {"mine": {"root": str(tmp_path / "nowhere")},
                                         "rafdb": {"root": str(tmp_path / "RAF")}})))
    mine, rafdb = startup_lines(result)
    assert mine.startswith(f"datasets.mine.root = {tmp_path / 'nowhere'}: ")
    assert "is not a folder" in mine and "one folder per class" in mine
    assert rafdb.startswith(f"datasets.rafdb.root = {tmp_path / 'RAF'}: ")
    assert "EmoLabel/list_patition_label.txt" in rafdb and "whdeng.cn" in rafdb

    result = snakemake(tmp_path, "-n",
                       overlays=case(tmp_path, no_weights(["mine"], {"mine": {"root": str(flat)}})))
    [line] = startup_lines(result)
    assert line.startswith(f"datasets.mine.root = {flat}: expected two or more class folders")
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------- raw data: the prepare job


def test_an_empty_class_folder_is_refused(tmp_path):
    root = tmp_path / "mine"
    for name in ("angry", "happy"):
        for i in range(3):
            image(root / name / f"{i}.png", noise(i))
    (root / "sad").mkdir()
    (root / "sad" / ".DS_Store").write_text("litter")  # litter is no image
    result = snakemake(tmp_path, "results/mine/prepared/manifest.csv",
                       overlays=case(tmp_path, no_weights(["mine"], {"mine": {
                           "root": str(root), "options": {"folds": 2}}})))
    job_error(result, "error: class folder(s) sad in ", str(root), "hold no images",
              "remove the folder")
    assert files_under(tmp_path / "results/mine/prepared") == []


@pytest.mark.parametrize("pattern, parts", [
    (r"^P(\d+)-", ("finds no subject in any of the 4 file names", "such as S010_001_00000017.png",
                   r"such as '^(S\d+)_'")),
    (r"^(S\d+_", ("is not a valid Python regular expression", "missing ), unterminated")),
])
def test_a_subject_pattern_that_reads_no_subject_is_refused(tmp_path, pattern, parts):
    root = tmp_path / "ck48"
    for name in ("angry", "happy"):
        for s in (10, 11):
            image(root / name / f"S{s:03d}_001_00000017.png", noise(s))
    result = snakemake(tmp_path, "results/mine/prepared/manifest.csv",
                       overlays=case(tmp_path, no_weights(["mine"], {"mine": {
                           "root": str(root), "options": {"folds": 2,
                                                          "subject_pattern": pattern}}})))
    job_error(result, "error: options.subject_pattern", *parts)
    assert files_under(tmp_path / "results/mine/prepared") == []


def test_braces_in_configured_text_are_never_read_as_wildcards(tmp_path):
    """A `{n}` quantifier in subject_pattern, a root path and a class folder with braces: the
    prepare job reads the subjects, and a dry run plans every job after it."""
    root = tmp_path / "faces{2024}"
    for name in ("happy", "sad{1}"):
        for subject in ("AB", "CD", "EF"):
            image(root / name / f"{subject}.HA1.12.png", noise(len(subject + name)))
    overlays = case(tmp_path, no_weights(["mine"], {"mine": {
        "root": str(root), "options": {"folds": 3, "subject_pattern": r"^([A-Z]{2})\."}}}))
    result = snakemake(tmp_path, "results/mine/prepared/manifest.csv", overlays=overlays)
    assert result.returncode == 0, console(result)[-3000:]
    manifest = pd.read_csv(tmp_path / "results/mine/prepared/manifest.csv")
    assert sorted(set(manifest["subject"])) == ["AB", "CD", "EF"]
    assert sorted(set(manifest["label_name"])) == ["happy", "sad{1}"]

    result = snakemake(tmp_path, "-n", overlays=overlays)
    assert result.returncode == 0, console(result)[-3000:]
    planned = console(result)
    for rule in ("train_stage1", "train_stage3", "evaluate", "tables", "figures"):
        assert f"rule {rule}:" in planned, planned[-3000:]


def test_a_weights_path_with_braces_stops_the_run_with_one_line(tmp_path):
    weights = tmp_path / "vgg{face}.pth"
    weights.write_bytes(b"")
    result = snakemake(tmp_path, "-n", overlays=case(tmp_path, {
        "datasets": {"synthetic": {"model": {"weights": str(weights)}}}}))
    [line] = startup_lines(result)
    assert line.startswith(
        f"datasets.synthetic.model.weights = {weights}: a weights path cannot hold")
    assert "move or link the file to a path without braces" in line


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """One Snakemake run preparing four datasets whose raw data holds bad labels and odd
    images: RAF-DB (a label 9), AffectNet (expression 12, and the dropped 9), CK+ (emotion
    code 9) and an imagefolder (a truncated JPEG; 16-bit, grayscale and CMYK images)."""
    top = tmp_path_factory.mktemp("catalog")
    raw = top / "raw"

    rafdb = raw / "RAF"
    lines = [f"train_{i:05d}.jpg {1 + i % 7}" for i in range(1, 5)] + ["train_00009.jpg 9"]
    lines += [f"test_{i:04d}.jpg {1 + i % 7}" for i in range(1, 3)]
    (rafdb / "EmoLabel").mkdir(parents=True)
    (rafdb / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for i, line in enumerate(lines):
        stem = line.split(".")[0]
        image(rafdb / "Image" / "aligned" / f"{stem}_aligned.jpg", noise(i, (100, 100)))

    affectnet = raw / "AffectNet"
    for folder, codes in (("train_set", [0, 1, 12, 9]), ("val_set", [2, 3])):
        for n, code in enumerate(codes):
            image(affectnet / folder / "images" / f"{n}.jpg", noise(n))
            (affectnet / folder / "annotations").mkdir(parents=True, exist_ok=True)
            np.save(affectnet / folder / "annotations" / f"{n}_exp.npy", np.array(str(code)))

    ckplus = raw / "CK+"
    for k, code in enumerate([1, 2, 9, 3]):
        subject, sequence = f"S{k + 10:03d}", "001"
        for f in range(1, 4):
            stem = f"{subject}_{sequence}_{f:08d}"
            image(ckplus / "cohn-kanade-images" / subject / sequence / f"{stem}.png",
                  noise(f), mode="L")
            marks = ckplus / "Landmarks" / subject / sequence / f"{stem}_landmarks.txt"
            marks.parent.mkdir(parents=True, exist_ok=True)
            marks.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in
                                     zip(np.linspace(5, 59, 68), np.linspace(5, 59, 68))))
        emotion = ckplus / "Emotion" / subject / sequence
        emotion.mkdir(parents=True)
        (emotion / f"{subject}_{sequence}_00000003_emotion.txt").write_text(f"   {code:.7e}\n")

    mine = raw / "mine"
    for name in ("a", "b"):
        for i in range(3):
            image(mine / name / f"{i}.png", noise(i))
    truncated = image(mine / "a" / "truncated.jpg", noise(7, (224, 224)))
    truncated.write_bytes(truncated.read_bytes()[:600])
    deep = np.zeros((224, 224), np.uint16)
    deep[:, 75:150], deep[:, 150:] = 32896, 65535
    image(mine / "a" / "deep.png", deep)
    gray = np.tile(np.arange(224, dtype=np.uint8), (224, 1))
    image(mine / "b" / "gray.png", gray)
    cmyk = Image.new("CMYK", (224, 224), (0, 255, 255, 0))  # red
    cmyk.save(mine / "b" / "cmyk.jpg")

    datasets = {"rafdb": {"root": str(rafdb)}, "affectnet": {"root": str(affectnet)},
                "ckplus": {"root": str(ckplus), "options": {"folds": 2}},
                "mine": {"root": str(mine), "options": {"folds": 2}}}
    result = snakemake(top, *(f"results/{name}/prepared/manifest.csv" for name in datasets),
                       overlays=case(top, no_weights(list(datasets), datasets)))
    assert result.returncode == 0, console(result)[-5000:]
    assert "Traceback" not in console(result)
    return top / "results"


def report_of(results: Path, dataset: str) -> dict:
    return json.loads((results / dataset / "prepared" / "report.json").read_text())


def test_label_codes_out_of_range_are_skipped_and_listed(catalog):
    rafdb = report_of(catalog, "rafdb")
    assert {"source": "EmoLabel/list_patition_label.txt:5",
            "reason": "unreadable: label line 'train_00009.jpg 9'"} in rafdb["skipped"]
    assert rafdb["images"] == 6

    affectnet = report_of(catalog, "affectnet")
    assert affectnet["skipped"] == [{"source": "train_set/images/2.jpg",
                                     "reason": "unreadable: expression code 12 not in 0..10"}]
    assert affectnet["excluded_by_label"] == {"9 Uncertain": 1}  # dropped by design
    assert affectnet["images"] == 4

    ckplus = report_of(catalog, "ckplus")
    assert ckplus["skipped"] == [{
        "source": "Emotion/S012/001/S012_001_00000003_emotion.txt",
        "reason": "unreadable: emotion code 9 not in 1..7"}]
    assert ckplus["images"] == 9 and ckplus["subjects"] == 3
    for name, report in (("rafdb", rafdb), ("affectnet", affectnet), ("ckplus", ckplus)):
        assert any("files skipped" in w and "listed under skipped" in w
                   for w in report["warnings"]), name
        log = (catalog / name / "logs" / "prepare.log").read_text()
        assert "warning: 1 files skipped (1 unreadable), listed under skipped" in log, log


def test_a_truncated_jpeg_is_skipped_and_listed(catalog):
    report = report_of(catalog, "mine")
    [skipped] = report["skipped"]
    assert skipped["source"] == "a/truncated.jpg"
    assert skipped["reason"].startswith(("truncated: ", "unreadable: ")), skipped
    manifest = pd.read_csv(catalog / "mine" / "prepared" / "manifest.csv")
    assert "a/truncated.jpg" not in set(manifest["source"])
    assert len(manifest) == 9


def stored_face(results: Path, dataset: str, source: str) -> np.ndarray:
    prepared = results / dataset / "prepared"
    manifest = pd.read_csv(prepared / "manifest.csv").set_index("source")
    return np.load(prepared / "images.npy", mmap_mode="r")[manifest.loc[source, "index"]]


def test_16_bit_grayscale_and_cmyk_images_are_converted_to_rgb(catalog):
    deep = stored_face(catalog, "mine", "a/deep.png")
    assert deep.shape == (224, 224, 3)
    assert (deep[:, :75] == 0).all() and (deep[:, 75:150] == 128).all()
    assert (deep[:, 150:] == 255).all()

    gray = stored_face(catalog, "mine", "b/gray.png")
    assert (gray == np.arange(224, dtype=np.uint8)[None, :, None]).all()

    red = stored_face(catalog, "mine", "b/cmyk.jpg").astype(int)
    assert (abs(red - [255, 0, 0]) <= 3).all()
    [warning] = report_of(catalog, "mine")["warnings"]  # the truncated file only
    assert "1 files skipped" in warning


# ---------------------------------------------------------------- the training job


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A workdir whose tiny synthetic store is prepared: the training cases start there."""
    workdir = tmp_path_factory.mktemp("train_cases")
    result = snakemake(workdir, "results/synthetic/prepared/manifest.csv")
    assert result.returncode == 0, console(result)[-5000:]
    return workdir


STAGE1 = "results/synthetic/default/fold0/stage1.pt"


def train_stage1(workdir: Path, synthetic: dict) -> subprocess.CompletedProcess:
    return snakemake(workdir, STAGE1,
                     overlays=case(workdir, {"datasets": {"synthetic": synthetic}}))


def assert_nothing_written(workdir: Path) -> None:
    run = workdir / "results/synthetic/default/fold0"
    assert files_under(run) == [], files_under(run)


def test_weights_with_wrong_keys_end_the_job_with_one_line(synthetic_run, tmp_path):
    weights = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.bias": torch.zeros(4)}, weights)
    result = train_stage1(synthetic_run, {"model": {"weights": str(weights)}})
    job_error(result, f"error: {weights}: expected the keys of vgg_face_dag.pth",
              "found ['conv1.weight', 'fc.bias']", "use VGG-Face's vgg_face_dag.pth")
    assert_nothing_written(synthetic_run)


def test_batch_norm_with_pretrained_weights_ends_the_job_with_one_line(synthetic_run, tmp_path):
    weights = tmp_path / "vgg_face_dag.pth"
    torch.save({"conv1_1.weight": torch.zeros(1)}, weights)
    result = train_stage1(synthetic_run, {"model": {"weights": str(weights),
                                                    "batch_norm": True}})
    job_error(result, f"error: {weights}: pretrained VGG-16 weights have no batch norm",
              "set model.batch_norm: false to load them, or weights: null")
    assert_nothing_written(synthetic_run)


class RunsCode:
    """Unpickling this runs a shell command (as a hostile weights file would)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_never_executed(synthetic_run, tmp_path):
    marker = tmp_path / "code-ran"
    weights = tmp_path / "vgg_face_dag.pth"
    torch.save({"conv1_1.weight": RunsCode(marker)}, weights)
    result = train_stage1(synthetic_run, {"model": {"weights": str(weights)}})
    line = job_error(result, f"error: {weights} is not a plain state dict that loads with "
                     "weights_only=True (loading it would call posix.system; nothing was run)",
                     "save the weights with torch.save(state_dict)")
    assert "weights_only=False" not in line  # torch's own advice would run the code
    assert not marker.exists(), "the pickle's code ran"
    assert_nothing_written(synthetic_run)


def test_a_nonfinite_loss_stops_the_stage_with_one_line(synthetic_run):
    result = train_stage1(synthetic_run, {"train": {"stage1": {"lr": 1.0e30,
                                                               "clipping": 1.0e30}}})
    line = job_error(result, "error: synthetic fold0 stage 1: loss term 'efe' became "
                     "non-finite at epoch 1, step ", "no checkpoint was overwritten",
                     "lower lr or clipping")
    assert line.split("step ")[1].split(";")[0].isdigit()
    assert_nothing_written(synthetic_run)  # no stage1.pt, no resumable state of a NaN epoch


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(("text", "line"), [
    ("datasets: {synthetic: {optoins: {seed: 0}}}",
     "config error: datasets.synthetic.optoins: unknown key; did you mean options?"),
    ("datasets: {synthetic: {options: {sujects: 6}}}",
     "config error: datasets.synthetic.options.sujects: unknown key; did you mean subjects?"),
    ("defaults: {model: {widht: 0.5}}",
     "config error: defaults.model.widht: unknown key; did you mean width?"),
    ("datasets: {synthetic: {train: {stage1: {epochs: ten}}}}",
     "config error: datasets.synthetic.train.stage1.epochs = 'ten': must be of type integer"),
    ("datasets: {synthetic: {train: {stage1: {epochs: 2.5}}}}",
     "config error: datasets.synthetic.train.stage1.epochs = 2.5: must be of type integer"),
    ("benchmarks: synthetic",
     "config error: benchmarks = 'synthetic': must be of type array"),
])
def test_config_mistakes_are_one_line(tmp_path, text, line):
    (tmp_path / "case.yaml").write_text(text + "\n")
    result = snakemake(tmp_path, "-n", overlays=(TINY, tmp_path / "case.yaml"), timeout=120)
    [shown] = startup_lines(result)
    assert shown.startswith(line), shown
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------- a full or read-only disk


@pytest.fixture
def mount(tmp_path):
    """mount(folder, size, read_only=False): a tmpfs there, unmounted after the test."""
    mounted = []

    def make(folder: Path, size: str, read_only: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs (root only): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """A file taking all of the folder's free space but `leave` bytes."""
    stat = os.statvfs(folder)
    filler = folder / "filler"
    with open(filler, "wb") as file:
        os.posix_fallocate(file.fileno(), 0, stat.f_bavail * stat.f_frsize - leave)
    return filler


def test_a_full_disk_ends_prepare_with_one_line(tmp_path, mount):
    results = mount(tmp_path / "results", "2m")
    result = snakemake(tmp_path)
    job_error(result, "error: no space left on device writing "
              "results/synthetic/prepared/images.npy.partial: free space or point results "
              "elsewhere (snakemake --directory DIR)")
    assert files_under(results / "synthetic/prepared") == []


def test_a_full_disk_ends_training_with_one_line(tmp_path, mount):
    results = mount(tmp_path / "results", "16m")
    assert snakemake(tmp_path, "results/synthetic/prepared/manifest.csv").returncode == 0
    fill(results, leave=300_000)  # room for the log, not for a state or a checkpoint
    result = snakemake(tmp_path, STAGE1)
    job_error(result, "error: no space left on device writing "
              "results/synthetic/default/fold0/state_stage1/last.pt: free space or point "
              "results elsewhere")
    assert files_under(results / "synthetic/default/fold0") == []  # no temporary file left


@pytest.mark.parametrize("made", ["never", "by an earlier run"])
def test_a_read_only_results_folder_stops_the_run_with_one_line(tmp_path, mount, made):
    """Before any job (Snakemake itself would stop with a traceback when it removes a job's
    old outputs there)."""
    results = mount(tmp_path / "results", "16m")
    if made == "by an earlier run":
        assert snakemake(tmp_path, "results/synthetic/prepared/manifest.csv").returncode == 0
    before = files_under(results)
    remount(results, "ro")
    [line] = startup_lines(snakemake(tmp_path))
    assert line == (f"read-only file system: cannot write {results}: remount it writable or "
                    "point results elsewhere (snakemake --directory DIR)")
    assert files_under(results) == before


JOB = """
import json, sys
from expmap.jobs import job_log
from expmap.train import train_stage
prepared, out, log, hp = sys.argv[1:5]
with job_log(log) as log:
    train_stage(1, json.loads(hp), prepared, "fold0", out + "/stage1.pt", out + "/stage1.csv",
                out + "/state", model={"width": 0.03125, "weights": None}, log=log)
"""


def test_a_disk_gone_read_only_during_training_ends_the_job_with_one_line(tmp_path, mount):
    """The training job's own line, when the disk goes read-only while the job runs (as
    ext4 does after an I/O error): here the results folder is read-only from the start."""
    from conftest import make_prepared, stage_hyperparameters

    prepared = make_prepared(tmp_path / "tiny" / "prepared")
    out = mount(tmp_path / "out", "1m", read_only=True)
    result = subprocess.run([sys.executable, "-c", JOB, str(prepared), str(out),
                             str(tmp_path / "train.log"),
                             json.dumps(stage_hyperparameters(1, weight_decay=0.0))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"error: read-only file system: cannot write {out}/state: "
                             "remount it writable or point results elsewhere "
                             "(snakemake --directory DIR)\n")
    assert (tmp_path / "train.log").read_text().endswith(result.stderr)


def test_atomic_writers_leave_nothing_on_a_full_disk(tmp_path, mount):
    """Each writer of results: the OSError names the file it was writing, and neither the
    file nor its temporary name is left."""
    import errno

    import matplotlib.pyplot as plt

    from expmap.checkpoints import save_atomic
    from expmap.io import atomic_write_npz, atomic_write_text
    from expmap.viz import save_figure

    full = mount(tmp_path / "full", "64k")
    big = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8)
    figure = plt.figure(figsize=(6, 6))
    figure.figimage(big[:160_000].reshape(400, 400), cmap="viridis")
    writers = {
        "a.txt": lambda path: atomic_write_text(path, "x" * 200_000),
        "a.pt": lambda path: save_atomic({"weights": torch.from_numpy(big)}, path),
        "a.npz": lambda path: atomic_write_npz(path, pixels=big),
        "a.png": lambda path: save_figure(figure, path),
    }
    for name, write in writers.items():
        with pytest.raises(OSError) as raised:
            write(full / name)
        assert raised.value.errno == errno.ENOSPC, name
        assert raised.value.filename == str(full / name), name
        assert files_under(full) == [], name
