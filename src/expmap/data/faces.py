"""Reading images and cutting out faces as 224 x 224 RGB uint8.

`read_rgb` turns whatever is on disk (grayscale, palette, CMYK, 16-bit PNG, EXIF-rotated
photos) into an RGB image, or raises `SkippedImage` with a one-word reason and detail
(missing / truncated / unreadable / unsupported) so that a prepare lists the file and goes on.
The crops: by a box, by facial landmarks (rotated so the eyes are level), centred, or by a
detected face (OpenCV's Haar cascade, an optional extra, shipped inside the wheel: nothing
is downloaded at run time).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from expmap.data.store import DETECTOR_CROP, IMAGE_SIZE

# Landmark-aligned and detected crops keep some context around the face, as VGG-Face's
# training crops did.
LANDMARK_MARGIN = 1.4
DETECTED_MARGIN = 1.25


class SkippedImage(Exception):
    """An image that cannot be used; `reason` is one of missing, truncated, unreadable,
    unsupported, and the message says the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def read_rgb(path: str | Path) -> Image.Image:
    """The decoded image as RGB (8 bits per channel), fully loaded."""
    path = Path(path)
    if not path.is_file():
        raise SkippedImage("missing", "no such file")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except FileNotFoundError as error:
        raise SkippedImage("missing", str(error)) from error
    except UnidentifiedImageError as error:
        raise SkippedImage("unreadable", "not an image format Pillow knows") from error
    except Image.DecompressionBombError as error:
        raise SkippedImage("unreadable", str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        reason = "truncated" if "truncat" in str(error).lower() else "unreadable"
        raise SkippedImage(reason, str(error) or type(error).__name__) from error
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (Pillow opens such PNGs as I;16 or I): scale 0..65535 to 0..255.
        values = np.asarray(image, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise SkippedImage("unsupported", f"pixel values outside 16 bits in mode {image.mode}")
        gray = np.rint(values / 257.0).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        raise SkippedImage("unsupported", "floating-point pixels (mode F)")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over white, not black, as a viewer shows them.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def to_face_array(image: Image.Image) -> np.ndarray:
    """Resize a (square) crop to 224 x 224 and return it as uint8 [224, 224, 3]."""
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def crop_box(image: Image.Image, x: float, y: float, width: float, height: float) -> np.ndarray:
    """The square centred on the box whose side is the box's longer side (outside: black)."""
    side = max(width, height)
    if side < 1:
        raise SkippedImage("unsupported", f"empty face box {width} x {height}")
    cx, cy = x + width / 2, y + height / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return to_face_array(image.crop((left, top, left + round(side), top + round(side))))


def crop_centre(image: Image.Image) -> np.ndarray:
    """The largest centred square (the whole image when it is square already)."""
    side = min(image.size)
    return crop_box(image, (image.width - side) / 2, (image.height - side) / 2, side, side)


def crop_landmarks(image: Image.Image, points: np.ndarray) -> np.ndarray:
    """A square around 68 facial landmarks, rotated so that the eye centres are level."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 68:
        left_eye, right_eye = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
        angle = math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])
    else:
        angle = 0.0
    cos, sin = math.cos(angle), math.sin(angle)
    # Landmarks in the face's upright frame: the box there gives centre and side.
    upright = points @ np.array([[cos, -sin], [sin, cos]])
    low, high = upright.min(axis=0), upright.max(axis=0)
    side = max(high - low) * LANDMARK_MARGIN
    if side < 1:
        raise SkippedImage("unsupported", "landmarks span no area")
    centre_upright = (low + high) / 2
    centre = np.array([[cos, -sin], [sin, cos]]) @ centre_upright
    size = max(1, round(side))
    # PIL's affine maps an output pixel (u, v) to the input: centre + R (u - s/2, v - s/2).
    a, b, d, e = cos, -sin, sin, cos
    c = centre[0] - (a + b) * size / 2
    f = centre[1] - (d + e) * size / 2
    aligned = image.transform((size, size), Image.Transform.AFFINE, (a, b, c, d, e, f),
                              resample=Image.Resampling.BILINEAR)
    return to_face_array(aligned)


_cascades = threading.local()


def _cascade_file():
    """OpenCV's frontal-face Haar cascade where the installed wheel ships it, else None
    (OpenCV 5 wheels no longer carry cv2/data/*.xml)."""
    try:
        import cv2
    except ImportError:
        return None
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / "haarcascade_frontalface_default.xml"
    usable = folder and path.is_file() and hasattr(cv2, "CascadeClassifier")
    return path if usable else None


def detector_available() -> bool:
    return _cascade_file() is not None


def detect_face(image: Image.Image) -> tuple[float, float, float, float] | None:
    """The largest frontal face found by OpenCV's Haar cascade as (x, y, width, height), or
    None when there is none (or OpenCV is not installed)."""
    cascade = _cascade_file()
    if cascade is None:
        return None
    import cv2

    if not hasattr(_cascades, "frontal"):
        # A cascade object per thread: detectMultiScale is not safe to share; OpenCV's own
        # threads are turned off because the prepare's pool already uses the cores given.
        cv2.setNumThreads(1)
        _cascades.frontal = cv2.CascadeClassifier(str(cascade))
    gray = np.asarray(image.convert("L"))
    smallest = max(24, min(gray.shape) // 6)
    try:
        faces = _cascades.frontal.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(smallest, smallest))
    except cv2.error as error:  # the detector's own failure on this image: list it
        raise SkippedImage("unreadable", f"face detector failed: {error}") from error
    if len(faces) == 0:
        return None
    x, y, width, height = max(faces, key=lambda box: box[2] * box[3])
    return float(x), float(y), float(width), float(height)


def crop_detected(image: Image.Image) -> tuple[np.ndarray, str]:
    """The detected face with some margin, else the centred crop; says which was used."""
    box = detect_face(image)
    if box is None:
        return crop_centre(image), "centre"
    x, y, width, height = box
    grow = DETECTED_MARGIN - 1
    return crop_box(image, x - width * grow / 2, y - height * grow / 2,
                    width * DETECTED_MARGIN, height * DETECTED_MARGIN), "detected"


def cut_face(image: Image.Image, crop: str, grey: bool = False) -> tuple[np.ndarray, str]:
    """The face by the store's crop convention (store.DETECTOR_CROP: the detected face, else
    the centred crop; store.CENTRE_CROP: the centred crop), turned grey first where asked
    (as a single-channel picture is read); says which crop was used."""
    if grey:
        image = image.convert("L").convert("RGB")
    return crop_detected(image) if crop == DETECTOR_CROP else (crop_centre(image), "centre")
