"""`expmap predict` on face photos of a user's own."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_prepared, train_stages
from PIL import Image

from expmap.checkpoints import load_checkpoint
from expmap.cli import main


def test_predict_writes_probabilities_masks_and_pattern_maps(trained, tmp_path, capsys):
    photos = []
    for i, mode in enumerate(["RGB", "L", "CMYK"]):  # grayscale and CMYK are converted
        path = tmp_path / f"face{i}.{'jpg' if mode == 'CMYK' else 'png'}"
        pixels = np.random.default_rng(i).integers(0, 255, (300, 260, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(path)
        photos.append(str(path))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(trained["stage3"]), "--out", str(out),
                 *photos, str(broken)]) == 0
    printed = capsys.readouterr()
    assert "face0.png" in printed.out and "broken.jpg" in printed.err
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 3
    classes = ["left", "middle", "right"]
    assert np.allclose(table[classes].sum(axis=1), 1.0, atol=1e-5)
    assert set(table["predicted"]) <= set(classes)
    for i in range(3):
        assert Image.open(out / f"face{i}_maps.png").size[0] > 300


def test_predict_refuses_an_earlier_stage_in_one_line(trained, tmp_path, capsys):
    assert main(["predict", "--model", str(trained["stage1"]), str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert "stage-1 checkpoint" in error and "\n" not in error


@pytest.fixture(scope="module")
def trained_grey(tmp_path_factory):
    """Checkpoints trained on a store of grey faces (given as the faces: centred crops)."""
    prepared = make_prepared(tmp_path_factory.mktemp("grey") / "tiny" / "prepared", grey=True)
    return train_stages(prepared, tmp_path_factory.mktemp("trained_grey"))


def colour_photo_and_its_grey(folder) -> list[str]:
    pixels = np.random.default_rng(7).integers(0, 255, (260, 300, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "colour.png")
    Image.fromarray(pixels).convert("L").save(folder / "grey.png")
    return [str(folder / "colour.png"), str(folder / "grey.png")]


def probabilities(out) -> np.ndarray:
    return pd.read_csv(out / "predictions.csv")[["left", "middle", "right"]].to_numpy()


def test_predict_prepares_a_photo_as_the_training_faces_were(trained_grey, tmp_path, capsys):
    assert load_checkpoint(trained_grey["stage3"])["preparation"] == {"grey": True,
                                                                      "crop": "centre"}
    photos = colour_photo_and_its_grey(tmp_path)
    assert main(["predict", "--model", str(trained_grey["stage3"]), "--out",
                 str(tmp_path / "out"), *photos]) == 0
    assert "prepared as training: grey, centred square crop" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert set(table["prepared"]) == {"prepared as training: grey, centred square crop"}
    assert set(table["crop"]) == {"centre"}
    colour, grey = probabilities(tmp_path / "out")
    np.testing.assert_allclose(colour, grey, atol=1e-6)  # the colour photo was seen as grey


def test_a_checkpoint_without_a_preparation_record_predicts_as_before(trained_grey, tmp_path,
                                                                      capsys):
    checkpoint = load_checkpoint(trained_grey["stage3"])
    del checkpoint["preparation"]
    torch.save(checkpoint, tmp_path / "old.pt")
    photos = colour_photo_and_its_grey(tmp_path)
    assert main(["predict", "--model", str(tmp_path / "old.pt"), "--out", str(tmp_path / "out"),
                 *photos]) == 0
    assert ("does not record how its training faces were prepared: colour, face found by the "
            "detector (else centred square)") in capsys.readouterr().out
    # both photos centred, so that only the colour differs
    assert main(["predict", "--model", str(tmp_path / "old.pt"), "--out", str(tmp_path / "out"),
                 "--crop", "centre", *photos]) == 0
    assert ("does not record how its training faces were prepared: colour, centred square "
            "crop (--crop)") in capsys.readouterr().out
    colour, grey = probabilities(tmp_path / "out")
    assert np.abs(colour - grey).max() > 1e-6  # taken in colour, as before


def test_overview_draws_a_face_of_each_class_above_its_map(tmp_path, capsys):
    run = tmp_path / "results" / "mine" / "default"
    (run / "fold0").mkdir(parents=True)
    (tmp_path / "results" / "mine" / "prepared").mkdir()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "results/mine/prepared/images.npy",
            rng.integers(0, 255, (6, 224, 224, 3), dtype=np.uint8))
    np.savez(run / "fold0" / "maps.npz", class_names=np.array(["a", "b", "c"]),
             labels=np.array([0, 2, 2]), rows=np.array([5, 1, 3]),
             patterns=rng.random((3, 224, 224)).astype(np.float16))
    out = tmp_path / "overview.png"
    assert main(["overview", str(run), str(out)]) == 0
    assert Image.open(out).size[0] > 200  # two classes with test faces: a and c
    assert main(["overview", str(tmp_path / "none"), str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("expmap overview: ") and "make demo" in error and "\n" not in error
