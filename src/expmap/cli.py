"""The commands a person types: `expmap predict` and `expmap overview`.

    expmap predict --model results/<dataset>/default/<fold>/stage3.pt face1.jpg face2.png ...
    expmap overview results/<dataset>/default picture.png

For each image: the class probabilities (printed as a table and written to
predictions.csv), the EFE mask laid over the face and the expression pattern map (PNGs).
Each photo is prepared as the model's training faces were (the checkpoint's record of its
prepared store): turned grey if they were grey, and cut the same way (the face found by
OpenCV's detector, or the photo's centred square where the training pictures were the
faces); --crop overrides the crop. A checkpoint written before checkpoints kept that record
is taken as trained on colour faces cut out by the detector.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from expmap.checkpoints import CheckpointError, load_checkpoint
from expmap.data.faces import SkippedImage, cut_face, read_rgb
from expmap.data.store import CENTRE_CROP, DETECTOR_CROP
from expmap.evaluate import head_outputs
from expmap.io import atomic_write_csv

# What predict assumes of a checkpoint that does not say how its faces were prepared: what
# it did before checkpoints said so.
UNRECORDED_PREPARATION = {"grey": False, "crop": DETECTOR_CROP}
CROP_NAMES = {DETECTOR_CROP: "face found by the detector (else centred square)",
              CENTRE_CROP: "centred square crop"}


def photo_preparation(checkpoint: dict, crop: str | None) -> tuple[dict, str]:
    """How photos are prepared for this checkpoint (`crop` overriding the crop), and the
    line that says so."""
    recorded = checkpoint.get("preparation")
    preparation = {**(recorded or UNRECORDED_PREPARATION), **({"crop": crop} if crop else {})}
    said = (f"{'grey' if preparation['grey'] else 'colour'}, {CROP_NAMES[preparation['crop']]}"
            + (" (--crop)" if crop else ""))
    if recorded is None:
        return preparation, (f"prepared as assumed for a checkpoint that does not record how "
                             f"its training faces were prepared: {said}")
    return preparation, f"prepared as training: {said}"


def prepared_faces(image_paths: list[str], preparation: dict
                   ) -> tuple[list[str], list[np.ndarray], list[str]]:
    """The photos that could be read, their faces prepared as `preparation` says, and the
    crop each got; an unreadable photo is one line on stderr."""
    kept, faces, crops = [], [], []
    for path in image_paths:
        try:
            face, cut = cut_face(read_rgb(path), preparation["crop"], preparation["grey"])
        except SkippedImage as error:
            print(f"skipped {path}: {error}", file=sys.stderr)
            continue
        kept.append(path)
        faces.append(face)
        crops.append(cut)
    return kept, faces, crops


def predict_images(checkpoint_path: str, image_paths: list[str], out: Path,
                   device: str = "cpu", crop: str | None = None) -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from expmap.viz import save_figure, upsample

    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint["stage"] != 3:
        raise CheckpointError(f"{checkpoint_path} is a stage-{checkpoint['stage']} checkpoint; "
                              "predict needs stage3.pt (it holds the EPMG head)")
    class_names = checkpoint["class_names"]
    preparation, prepared = photo_preparation(checkpoint, crop)
    print(prepared + ("; the training pictures were the faces: give face crops, or --crop "
                      "detector for whole photos" if preparation["crop"] == CENTRE_CROP
                      and not crop else ""))
    kept, faces, crops = prepared_faces(image_paths, preparation)
    rows = []
    if kept:
        outputs = head_outputs(checkpoint, "epmg", np.stack(faces), np.arange(len(kept)), device)
    for i, (path, face, cut) in enumerate(zip(kept, faces, crops)):
        probabilities = outputs["probabilities"][i].numpy()
        predicted = class_names[int(probabilities.argmax())]
        figure_path = out / f"{Path(path).stem}_maps.png"
        figure, axes = plt.subplots(1, 3, figsize=(9, 3.3))
        axes[0].imshow(face)
        axes[0].set_title(f"face ({cut} crop{', grey' if preparation['grey'] else ''})")
        axes[1].imshow(face)
        axes[1].imshow(upsample(outputs["masks"][i, 0].numpy(), face.shape[0]), cmap="jet",
                       alpha=0.45, vmin=0, vmax=1)
        axes[1].set_title("EFE mask")
        axes[2].imshow(outputs["patterns"][i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[2].set_title(f"pattern map: {predicted}")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        save_figure(figure, figure_path)
        rows.append({"image": path, "predicted": predicted, "crop": cut, "prepared": prepared,
                     **{name: float(p) for name, p in zip(class_names, probabilities)},
                     "figure": str(figure_path)})
    table = pd.DataFrame(rows)
    if len(table):
        atomic_write_csv(out / "predictions.csv", table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="expmap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify face photos with a trained model")
    predict.add_argument("--model", required=True, help="a stage-3 checkpoint (stage3.pt)")
    predict.add_argument("--out", default="predictions", help="folder for the PNGs and CSV")
    predict.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    predict.add_argument("--crop", choices=sorted(CROP_NAMES),
                         help="cut the face this way instead of as the training faces were: "
                              "detector (the face OpenCV finds) or centre (the centred square)")
    predict.add_argument("images", nargs="+", help="face photos (JPEG, PNG, ...)")
    overview = commands.add_parser("overview", help="a small picture of a finished run: a "
                                   "test face of each class above its pattern map")
    overview.add_argument("run", help="results/<dataset>/<variant>")
    overview.add_argument("out", help="the PNG to write")
    args = parser.parse_args(argv)
    return run_overview(args) if args.command == "overview" else run_predict(args)


def run_overview(args) -> int:
    from expmap.errors import UserError
    from expmap.viz import overview

    try:
        overview(args.run, args.out)
    except UserError as error:
        print(f"expmap overview: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def run_predict(args) -> int:
    try:
        table = predict_images(args.model, args.images, Path(args.out), args.device,
                               args.crop)
    except CheckpointError as error:
        print(f"expmap predict: {error}", file=sys.stderr)
        return 2
    if table.empty:
        print("expmap predict: none of the images could be read", file=sys.stderr)
        return 2
    class_columns = [c for c in table.columns
                     if c not in ("image", "predicted", "crop", "prepared", "figure")]
    shown = table[["image", "predicted", *class_columns]].copy()
    shown[class_columns] = (100 * shown[class_columns]).round(1)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False))
    print(f"\nprobabilities (%) above; masks and pattern maps: {Path(args.out) / '*_maps.png'}; "
          f"table: {Path(args.out) / 'predictions.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
