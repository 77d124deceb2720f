"""RAF-DB basic: EmoLabel/list_patition_label.txt with Image/aligned/ (Image/original/).

Options (config `datasets.rafdb`):
  images: aligned   aligned: Image/aligned/<name>_aligned.jpg, Image/original/<name> (cut
                    out by Annotation/boundingbox/, else centred) where the aligned one is
                    absent; original: the original images throughout

The official split (train_* / test_*) is the only fold, `test`. RAF-DB names no subjects:
each image is its own. Class order, labels 1..7 of the list: Surprise, Fear, Disgust,
Happiness, Sadness, Anger, Neutral.
"""

from __future__ import annotations

from pathlib import Path

from expmap.data.adapters import LayoutError
from expmap.data.adapters.common import Item, Skipped, find_root, option, prepare_store
from expmap.data.faces import crop_box, crop_centre, read_rgb

NAME = "rafdb"
LAYOUT = "RAF-DB basic's EmoLabel/list_patition_label.txt and Image/aligned/ (or Image/original/)"
SOURCE = "http://www.whdeng.cn/RAF/model1.html (RAF-DB, by agreement; the basic/ folder)"
needs_root = True

CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
PUBLISHED = {"train images": (12271,), "test images": (3068,)}
LABELS = Path("EmoLabel") / "list_patition_label.txt"  # the official spelling


def looks_like(folder: Path) -> bool:
    return (folder / LABELS).is_file() and (folder / "Image").is_dir()


def locate(root: Path) -> Path:
    return find_root(root, looks_like, f"{LABELS.as_posix()} and Image/")


def box_of(root: Path, name: str) -> tuple:
    """("box", x1, y1, x2, y2) from Annotation/boundingbox/, or () when there is none."""
    path = root / "Annotation" / "boundingbox" / f"{Path(name).stem}_boundingbox.txt"
    try:
        x1, y1, x2, y2 = (float(value) for value in path.read_text().split()[:4])
    except (OSError, ValueError):
        return ()
    return ("box", x1, y1, x2, y2)


def make_face(root: Path):
    def face(item: Item):
        image = read_rgb(root / item.source)
        if item.crop and item.crop[0] == "box":
            x1, y1, x2, y2 = item.crop[1:]
            return crop_box(image, x1, y1, x2 - x1, y2 - y1), "box"
        return crop_centre(image), "aligned" if item.crop == ("aligned",) else "centre"
    return face


def prepare(options: dict, root: Path, out: Path, threads: int, log) -> dict:
    root = locate(root)
    images = str(option(options, "images", "aligned"))
    if images not in ("aligned", "original"):
        raise LayoutError(f"datasets.rafdb.options.images: {images} is not one of aligned, "
                          "original")
    items: list[Item] = []
    skipped: list[Skipped] = []
    for number, line in enumerate((root / LABELS).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        name = fields[0]
        split = name.split("_")[0]
        if len(fields) != 2 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= 7 \
                or split not in ("train", "test"):
            skipped.append(Skipped(f"{LABELS.as_posix()}:{number}",
                                   f"unreadable: label line {line.strip()!r}"))
            continue
        aligned = Path("Image") / "aligned" / f"{Path(name).stem}_aligned.jpg"
        if images == "aligned" and (root / aligned).is_file():
            source, crop = aligned, ("aligned",)
        elif (root / "Image" / "original" / name).is_file():
            source, crop = Path("Image") / "original" / name, box_of(root, name)
        else:
            source, crop = (aligned if images == "aligned" else
                            Path("Image") / "original" / name), ()
        items.append(Item(image_id=Path(name).stem, source=source.as_posix(),
                          subject=Path(name).stem, label=int(fields[1]) - 1, split=split,
                          crop=crop))
    return prepare_store(
        title="RAF-DB", root=root, out=out, items=items, classes=CLASSES,
        make_face=make_face(root), options=options, threads=threads, log=log,
        published=PUBLISHED, listing_skipped=skipped, fallback_crop="centre")
