"""`expmap predict` on face photos of a user's own."""

import numpy as np
import pandas as pd
from PIL import Image

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
