"""Drawn faces showing CK+'s seven expressions: the demo's dataset, made from a seed.

Every subject is a drawn identity (face shape, skin, hair, position, scale, roll, lighting)
with one sequence per expression that rises from neutral to the peak over
`sequence_length` frames, as CK+'s sequences do. Each expression moves the regions that
carry it in real faces (FACS action units, simplified): brows, eyes, nose, cheeks, mouth.
The cues are bold filled shapes (brow bars, eye whites around dark irises, lips, mouth
openings, teeth) because a narrow VGG trained from scratch does not learn thin strokes.

Besides the picture, every frame has the ground truth of where its expression shows: a
binary mask of the regions that carry it, drawn around those parts where they are in
that frame. Everything is numpy on a fixed grid, so a seed gives the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from expmap.data.store import IMAGE_SIZE

CLASSES = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")

# Which regions move for each expression, and how (the AUs the drawing imitates).
REGIONS = {
    "Anger": ("brows", "eyes", "mouth"),
    "Contempt": ("mouth",),
    "Disgust": ("nose", "mouth"),
    "Fear": ("brows", "eyes", "mouth"),
    "Happiness": ("cheeks", "mouth"),
    "Sadness": ("brows", "mouth"),
    "Surprise": ("brows", "eyes", "mouth"),
}
CUES = {
    "Anger": "brows lowered and drawn together into a V, eyes narrowed, lips pressed thin",
    "Contempt": "one lip corner raised and pulled sideways with a crease (mirror side varies)",
    "Disgust": "nose wrinkled with flared nostrils, upper lip raised baring the upper teeth",
    "Fear": "brows raised, straight and drawn together, eyes wide open, "
            "lips stretched wide and open showing the lower teeth",
    "Happiness": "cheeks raised with folds beside the nose, wide smile showing the upper teeth",
    "Sadness": "inner ends of the brows raised, lip corners pulled down",
    "Surprise": "brows raised high and arched, eyes wide open, jaw dropped into an open O",
}


@dataclass(frozen=True)
class Pose:
    """How far each part is from neutral (all zero); units are face half-widths."""

    brow_raise: float = 0.0  # both brows up (+) or down (-)
    brow_inner_raise: float = 0.0  # inner ends up (+, sadness) or down (-, anger)
    brow_inward: float = 0.0  # inner ends pulled toward the nose
    brow_arch: float = 0.0  # extra upward bulge of the brow
    eye_open: float = 0.0  # eye height factor - 1
    mouth_width: float = 0.0  # mouth width factor - 1
    mouth_lift: float = 0.0  # both lip corners up (+) or down (-)
    mouth_open: float = 0.0  # gap between the lips
    upper_lip_raise: float = 0.0  # extra gap above the centre line
    lip_press: float = 0.0  # fraction of lip thickness lost
    lower_lip_push: float = 0.0  # lower lip pushed up and out (thicker)
    smirk: float = 0.0  # one lip corner up and out
    teeth_upper: float = 0.0  # opacity of the upper teeth inside the opening
    teeth_lower: float = 0.0
    nose_wrinkle: float = 0.0  # opacity of the wrinkles, nostril flare
    cheek_raise: float = 0.0  # opacity of raised cheeks and nasolabial folds

    def scaled(self, factors: np.ndarray) -> Pose:
        values = np.array(dataclasses.astuple(self)) * factors
        return Pose(*(float(v) for v in values))


PEAKS = {
    "Anger": Pose(brow_raise=-0.07, brow_inner_raise=-0.13, brow_inward=0.05, eye_open=-0.55,
                  lip_press=0.65, mouth_width=-0.12, mouth_lift=-0.03),
    "Contempt": Pose(smirk=0.28),
    "Disgust": Pose(nose_wrinkle=1.0, upper_lip_raise=0.09, teeth_upper=1.0, mouth_lift=-0.05),
    "Fear": Pose(brow_raise=0.10, brow_inner_raise=0.07, brow_inward=0.05, brow_arch=-0.03,
                 eye_open=1.0, mouth_width=0.28, mouth_open=0.09, mouth_lift=-0.07,
                 teeth_lower=1.0, lip_press=0.3),
    "Happiness": Pose(mouth_lift=0.17, mouth_width=0.22, mouth_open=0.12, teeth_upper=1.0,
                      cheek_raise=1.0),
    "Sadness": Pose(brow_inner_raise=0.15, brow_inward=0.03, brow_raise=-0.02, mouth_lift=-0.15,
                    lower_lip_push=0.035, mouth_width=-0.08),
    "Surprise": Pose(brow_raise=0.17, brow_arch=0.08, eye_open=1.25, mouth_open=0.30,
                     mouth_width=-0.32),
}
# Fields that are opacities: a subject's style may weaken them but not push them past 1.
OPACITY_FIELDS = np.array([f.name in ("teeth_upper", "teeth_lower", "nose_wrinkle", "cheek_raise")
                           for f in dataclasses.fields(Pose)])


@dataclass(frozen=True)
class Identity:
    """What stays the same across one subject's frames."""

    centre: tuple[float, float]  # face centre in pixels
    scale: float  # face half-width in pixels
    aspect: float  # face half-height / half-width
    roll: float  # head tilt, radians
    light: tuple[float, float, float]  # ambient, gradient x, gradient y (per 112 px)
    skin: np.ndarray
    lips: np.ndarray
    hair: np.ndarray
    brows: np.ndarray
    iris: np.ndarray
    background: np.ndarray
    clothes: np.ndarray
    hairline: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float  # brow height above the eye centre
    brow_inner_x: float
    brow_outer_x: float
    brow_thickness: float  # half thickness
    brow_arch: float
    nose_y: float
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float


def make_identity(rng: np.random.Generator) -> Identity:
    u = rng.uniform
    shade = u(0, 1)  # light to dark skin
    skin = (1 - shade) * np.array([238, 204, 180]) + shade * np.array([112, 76, 54])
    skin = skin * u(0.95, 1.05, 3)
    hair = np.array([[22, 18, 16], [70, 45, 28], [125, 85, 50], [200, 165, 105],
                     [150, 150, 150]][rng.integers(5)]) * u(0.85, 1.1)
    angle = u(0, 2 * np.pi)
    gradient = u(0.06, 0.22)
    eye_x, eye_w = u(0.34, 0.42), u(0.15, 0.19)
    return Identity(
        # Roughly aligned, as the real adapters' crops are: little spread in place and size.
        centre=(112 + u(-3, 3), 115 + u(-3, 3)),
        scale=u(64, 72),
        aspect=u(1.2, 1.34),
        roll=u(-0.05, 0.05),
        light=(u(0.88, 1.08), gradient * np.cos(angle), gradient * np.sin(angle)),
        skin=skin,
        lips=skin * np.array([0.82, 0.52, 0.52]) * u(0.85, 1.0),
        hair=hair,
        brows=np.minimum(hair, skin * 0.42),
        iris=np.array([[60, 40, 25], [40, 70, 110], [70, 90, 60], [30, 25, 20]][rng.integers(4)]),
        background=u(60, 200) * u(0.8, 1.2, 3),
        clothes=u(30, 220, 3),
        hairline=u(-1.02, -0.88),
        eye_x=eye_x,
        eye_y=u(-0.16, -0.08),
        eye_w=eye_w,
        eye_h=u(0.065, 0.085),
        brow_gap=u(0.2, 0.25),
        brow_inner_x=u(0.1, 0.16),
        brow_outer_x=eye_x + eye_w + u(0.02, 0.07),
        brow_thickness=u(0.05, 0.065),
        brow_arch=u(0.0, 0.05),
        nose_y=u(0.27, 0.33),
        mouth_y=u(0.58, 0.66),
        mouth_w=u(0.3, 0.37),
        lip_upper=u(0.05, 0.065),
        lip_lower=u(0.06, 0.085),
    )


PIXEL_CENTRES = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5


class Canvas:
    """An RGB float image drawn in face coordinates (origin at the face centre, unit = the
    face half-width, y down). Shapes are signed distances (negative inside, in face units);
    each is evaluated only in the window of pixels its bounding box covers."""

    def __init__(self, centre, scale: float, roll: float, background: np.ndarray):
        self.centre, self.scale = centre, scale
        self.cos, self.sin = np.cos(roll), np.sin(roll)
        dx = PIXEL_CENTRES[None, :] - centre[0]
        dy = PIXEL_CENTRES[:, None] - centre[1]
        self.x = ((self.cos * dx + self.sin * dy) / scale).astype(np.float32)
        self.y = ((-self.sin * dx + self.cos * dy) / scale).astype(np.float32)
        self.rgb = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
        self.rgb[:] = background

    def window(self, box):
        """Pixel slices covering the face-coordinate box (x0, y0, x1, y1) under the roll."""
        x0, y0, x1, y1 = (v * self.scale for v in box)
        corners = ((x0, y0), (x1, y0), (x0, y1), (x1, y1))
        px = [self.centre[0] + self.cos * x - self.sin * y for x, y in corners]
        py = [self.centre[1] + self.sin * x + self.cos * y for x, y in corners]

        def pixels(low, high):  # plain floats: numpy's scalar calls cost more than the maths
            return slice(int(min(max(low - 2, 0), IMAGE_SIZE)),
                         int(min(max(high + 3, 0), IMAGE_SIZE)))
        return pixels(min(py), max(py)), pixels(min(px), max(px))

    def coverage(self, shape, box):
        """Anti-aliased coverage (0..1) of `shape(x, y) -> signed distance` and its window."""
        rows, cols = self.window(box)
        distance = shape(self.x[rows, cols], self.y[rows, cols])
        return np.clip(0.5 - distance * self.scale, 0, 1), (rows, cols)

    def paint(self, shape, box, colour, opacity: float = 1.0) -> None:
        if opacity <= 0:
            return
        alpha, window = self.coverage(shape, box)
        target = self.rgb[window]
        target += (np.asarray(colour, np.float32) - target) * (alpha * opacity)[..., None]


def ellipse(cx, cy, ax, ay):
    def distance(x, y):
        return (np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2) - 1) * min(ax, ay)
    return distance, (cx - ax, cy - ay, cx + ax, cy + ay)


def stroke(start, end, bulge: float, half_thickness: float, taper: float = 0.0):
    """A bar from `start` to `end` bowed by `bulge` toward -y (up), thinning by `taper`."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.hypot(*(end - start)))
    along = (end - start) / length
    normal = np.array([along[1], -along[0]])
    if normal[1] > 0:
        normal = -normal

    def distance(x, y):
        dx, dy = x - start[0], y - start[1]
        u = (dx * along[0] + dy * along[1]) / length
        v = dx * normal[0] + dy * normal[1]
        uc = np.clip(u, 0, 1)
        thickness = half_thickness * (1 - taper * uc)
        gap = np.abs(v - bulge * 4 * uc * (1 - uc)) - thickness
        return np.maximum(gap, np.maximum(-u, u - 1) * length)

    pad = abs(bulge) + half_thickness
    box = (min(start[0], end[0]) - pad, min(start[1], end[1]) - pad,
           max(start[0], end[0]) + pad, max(start[1], end[1]) + pad)
    return distance, box


def intersect(*shapes):
    def distance(x, y):
        return np.maximum.reduce([shape(x, y) for shape, _ in shapes])
    return distance, shapes[0][1]


def dilate(shape, margin: float):
    function, (x0, y0, x1, y1) = shape
    return (lambda x, y: function(x, y) - margin), (x0 - margin, y0 - margin, x1 + margin,
                                                     y1 + margin)


class Mouth:
    """Lips between two curves around a centre line whose corners lift or drop; an
    opening between the lips; teeth along the opening's top and bottom."""

    def __init__(self, identity: Identity, pose: Pose, smirk_side: int):
        self.cy = identity.mouth_y
        width = identity.mouth_w * (1 + pose.mouth_width)
        self.half_width = {-1: width, 1: width}
        self.half_width[smirk_side] += 0.6 * pose.smirk
        self.lift, self.smirk, self.smirk_side = pose.mouth_lift, pose.smirk, smirk_side
        self.open_top = pose.mouth_open / 2 + pose.upper_lip_raise
        self.open_bottom = pose.mouth_open / 2
        squeeze = max(0.15, 1 - pose.lip_press)
        self.lip_upper = identity.lip_upper * squeeze
        self.lip_lower = identity.lip_lower * squeeze + pose.lower_lip_push
        self.box = (-self.half_width[-1], self.cy - 0.5, self.half_width[1], self.cy + 0.5)

    def profile(self, x):
        """Normalised x (-1..1 across the mouth), the lens profile, the centre line."""
        xn = np.where(x > 0, x / self.half_width[1], x / self.half_width[-1])
        lens = np.sqrt(np.clip(1 - xn * xn, 0, 1))
        side = np.clip(xn * self.smirk_side, 0, 1)
        centre = self.cy - self.lift * xn * xn - self.smirk * side * side
        return xn, lens, centre

    def band(self, top_offset, bottom_offset, inset: float = 0.0):
        """The region between centre - top_offset*lens and centre + bottom_offset*lens."""
        def distance(x, y):
            xn, lens, centre = self.profile(x)
            top = centre - top_offset(lens)
            bottom = centre + bottom_offset(lens)
            edge = (np.abs(xn) - (1 - inset)) * min(self.half_width.values())
            return np.maximum(np.maximum(top - y, y - bottom), edge)
        return distance, self.box

    def lips(self):
        return self.band(lambda p: (self.open_top + self.lip_upper) * p,
                         lambda p: (self.open_bottom + self.lip_lower) * p)

    def opening(self):
        return self.band(lambda p: self.open_top * p, lambda p: self.open_bottom * p)

    def upper_teeth(self):
        height = 0.45 * (self.open_top + self.open_bottom)
        return self.band(lambda p: self.open_top * p, lambda p: (height - self.open_top) * p, 0.12)

    def lower_teeth(self):
        height = 0.35 * (self.open_top + self.open_bottom)
        return self.band(lambda p: (height - self.open_bottom) * p, lambda p: self.open_bottom * p,
                         0.15)

    def line(self):
        return self.band(lambda p: np.full_like(p, 0.012), lambda p: np.full_like(p, 0.012), 0.02)

    def corner(self):
        """Where the smirking corner ends (face coordinates)."""
        x = self.smirk_side * self.half_width[self.smirk_side]
        return x, self.cy - self.smirk


def face_shape(identity: Identity):
    return ellipse(0.0, 0.0, 1.0, identity.aspect)


def brow_strokes(identity: Identity, pose: Pose):
    base = identity.eye_y - identity.brow_gap - pose.brow_raise
    for side in (-1, 1):
        inner = (side * (identity.brow_inner_x - pose.brow_inward), base - pose.brow_inner_raise)
        outer = (side * identity.brow_outer_x, base + 0.02)
        yield stroke(inner, outer, identity.brow_arch + pose.brow_arch,
                     identity.brow_thickness, taper=0.35)


def eye(cx: float, cy: float, half_width: float, upper: float, lower: float):
    """(eye white, upper lid line): an almond reaching `upper` above and `lower` below."""
    def lens(x):
        xn = (x - cx) / half_width
        return xn, np.sqrt(np.clip(1 - xn * xn, 0, 1))

    def white(x, y):
        xn, p = lens(x)
        return np.maximum(np.maximum(cy - upper * p - y, y - (cy + lower * p)),
                          (np.abs(xn) - 1) * half_width)

    def lid(x, y):
        xn, p = lens(x)
        return np.maximum(np.abs(y - (cy - upper * p)) - 0.02, (np.abs(xn) - 1.08) * half_width)

    box = (cx - half_width - 0.05, cy - upper - 0.05, cx + half_width + 0.05, cy + lower + 0.05)
    return (white, box), (lid, box)


def eye_shapes(identity: Identity, pose: Pose):
    """(eye white, upper lid line, centre) per eye; the height follows eye_open."""
    opening = max(0.3, 1 + pose.eye_open)
    upper, lower = identity.eye_h * opening, 0.75 * identity.eye_h * min(opening, 1.4)
    for side in (-1, 1):
        cx, cy = side * identity.eye_x, identity.eye_y
        yield *eye(cx, cy, identity.eye_w, upper, lower), (cx, cy)


def render(identity: Identity, pose: Pose, smirk_side: int, regions: tuple[str, ...],
           jitter: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame: uint8 RGB [224, 224, 3], the uint8 0/1 masks of `regions` and of the face."""
    dx, dy, droll, dscale = jitter
    centre = (identity.centre[0] + dx, identity.centre[1] + dy)
    canvas = Canvas(centre, identity.scale * dscale, identity.roll + droll, identity.background)
    face = paint_head(canvas, identity)
    paint_nose_and_cheeks(canvas, identity, pose)
    eyes = list(eye_shapes(identity, pose))
    for white, lid, (cx, cy) in eyes:
        canvas.paint(*white, (245, 245, 240))
        canvas.paint(*intersect(ellipse(cx, cy + 0.005, 0.08, 0.08), white), identity.iris)
        canvas.paint(*intersect(ellipse(cx, cy + 0.005, 0.036, 0.036), white), (10, 10, 10))
        canvas.paint(*lid, identity.brows)
    brows = list(brow_strokes(identity, pose))
    for brow in brows:
        canvas.paint(*brow, identity.brows)
    mouth = paint_mouth(canvas, identity, pose, smirk_side)
    image = lit(canvas, identity, noise)
    region_shapes = {
        "brows": [dilate(brow, 0.07) for brow in brows],
        "eyes": [ellipse(cx, cy, identity.eye_w + 0.07,
                         identity.eye_h * max(1.0, 1 + pose.eye_open) + 0.07)
                 for _, _, (cx, cy) in eyes],
        "mouth": [dilate(mouth.lips(), 0.1)],  # wide enough for the contempt crease
        "nose": [ellipse(0, identity.nose_y - 0.2, 0.2, 0.3)],
        "cheeks": [ellipse(side * 0.4, identity.nose_y + 0.1, 0.25, 0.3) for side in (-1, 1)],
    }
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    for region in regions:
        for shape in region_shapes[region]:
            inside, window = canvas.coverage(*shape)
            mask[window] |= inside > 0.5
    inside_face, window = canvas.coverage(*face)
    face_mask = np.zeros_like(mask)
    face_mask[window] = inside_face > 0.5
    return image, (mask & face_mask).astype(np.uint8), face_mask.astype(np.uint8)


def paint_head(canvas: Canvas, identity: Identity):
    """Hair, clothes, neck, ears and the face's skin; returns the face's shape."""
    aspect, skin = identity.aspect, identity.skin
    canvas.paint(*ellipse(0, -0.22, 1.14, aspect * 0.92), identity.hair)
    canvas.paint(*ellipse(0, aspect + 0.95, 1.7, 0.75), identity.clothes)
    canvas.paint(*intersect(ellipse(0, aspect, 0.48, 1.2), ellipse(0, aspect + 0.3, 3, 1.0)),
                 skin * 0.8)
    for side in (-1, 1):
        canvas.paint(*ellipse(side * 0.98, 0.0, 0.13, 0.24), skin * 0.88)
    face = face_shape(identity)
    hairline = identity.hairline * aspect
    # Skin below the hairline; above it the hair ellipse shows through as the fringe.
    canvas.paint(*intersect(face, (lambda x, y: hairline + 0.1 * np.cos(3 * x) - y, face[1])),
                 skin)
    return face


def paint_nose_and_cheeks(canvas: Canvas, identity: Identity, pose: Pose) -> None:
    skin = identity.skin
    # Nose: tip shade, nostrils (flared when wrinkled), wrinkles across the bridge.
    wrinkle = pose.nose_wrinkle
    canvas.paint(*ellipse(0, identity.nose_y - 0.06, 0.12, 0.1), skin * 0.9)
    for side in (-1, 1):
        canvas.paint(*ellipse(side * (0.085 + 0.03 * wrinkle), identity.nose_y - 0.03 * wrinkle,
                              0.045 + 0.03 * wrinkle, 0.025 + 0.015 * wrinkle), skin * 0.35)
    canvas.paint(*ellipse(0, identity.nose_y - 0.3, 0.13, 0.14), skin * 0.75, 0.5 * wrinkle)
    for k in range(3):
        y = identity.nose_y - 0.42 + 0.1 * k
        canvas.paint(*stroke((-0.13, y), (0.13, y), 0.03, 0.026), skin * 0.45, wrinkle)
    # Cheeks: raised, rosy, with nasolabial folds.
    cheek = pose.cheek_raise
    for side in (-1, 1):
        canvas.paint(*ellipse(side * 0.47, identity.nose_y - 0.02, 0.2, 0.13),
                     skin * np.array([1.08, 0.8, 0.8]), 0.7 * cheek)
        canvas.paint(*stroke((side * 0.17, identity.nose_y + 0.03),
                             (side * 0.5, identity.mouth_y - 0.04), 0.04, 0.026),
                     skin * 0.6, cheek)


def paint_mouth(canvas: Canvas, identity: Identity, pose: Pose, smirk_side: int) -> Mouth:
    mouth = Mouth(identity, pose, smirk_side)
    canvas.paint(*mouth.lips(), identity.lips)
    canvas.paint(*mouth.line(), identity.lips * 0.45)
    if mouth.open_top + mouth.open_bottom > 0.004:
        canvas.paint(*mouth.opening(), (45, 15, 20))
        canvas.paint(*mouth.upper_teeth(), (240, 238, 225), pose.teeth_upper)
        canvas.paint(*mouth.lower_teeth(), (240, 238, 225), pose.teeth_lower)
    corner_x, corner_y = mouth.corner()
    canvas.paint(*ellipse(corner_x + smirk_side * 0.05, corner_y - 0.01, 0.045, 0.1),
                 identity.skin * 0.45, min(1.0, pose.smirk / 0.1))
    return mouth


def lit(canvas: Canvas, identity: Identity, noise: np.ndarray) -> np.ndarray:
    """The canvas as uint8 RGB: light falls off across the face; the camera adds noise."""
    ambient, gx, gy = identity.light
    light = ambient * (1 + gx * (PIXEL_CENTRES[None, :] / 112 - 1)
                       + gy * (PIXEL_CENTRES[:, None] / 112 - 1))
    image = canvas.rgb
    image *= light[..., None]
    image += noise[..., None] + 0.5  # + 0.5: the cast below truncates, this rounds
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def intensity_ramp(sequence_length: int) -> np.ndarray:
    """Expression intensity per frame, 0 (neutral) to 1 (peak), easing into the peak."""
    t = np.linspace(0.0, 1.0, sequence_length)
    return 1 - (1 - t) ** 2


@dataclass(frozen=True)
class Frame:
    subject: str
    label: int
    frame: int  # position in the sequence, 0 = neutral
    intensity: float
    image: np.ndarray  # uint8 [224, 224, 3]
    regions: np.ndarray  # uint8 [224, 224], 1 where the expression shows
    face: np.ndarray  # uint8 [224, 224], 1 on the face (the regions lie inside it)


def subject_id(index: int) -> str:
    return f"S{index + 1:03d}"


def render_sequence(seed: int, subject: int, label: int, sequence_length: int,
                    keep: int | None = None) -> list[Frame]:
    """The last `keep` frames (all by default) of subject `subject`'s sequence of `label`.

    Random streams are keyed by (seed, subject) and (seed, subject, label), so any frame
    comes out the same whatever else is generated."""
    identity = make_identity(np.random.default_rng([seed, subject, 0]))
    rng = np.random.default_rng([seed, subject, 1 + label])
    name = CLASSES[label]
    # Each subject shows the expression in its own way: every movement scaled a little.
    style = rng.uniform(0.8, 1.15, len(OPACITY_FIELDS)) * rng.uniform(0.85, 1.05)
    style[OPACITY_FIELDS] = np.minimum(style[OPACITY_FIELDS], 1.0)
    smirk_side = int(rng.choice([-1, 1]))
    peak = PEAKS[name].scaled(style)
    intensities = intensity_ramp(sequence_length)
    jitters = np.column_stack([rng.uniform(-1, 1, (sequence_length, 2)),
                               rng.uniform(-0.01, 0.01, sequence_length),
                               rng.uniform(0.985, 1.015, sequence_length)])
    first = 0 if keep is None else sequence_length - keep
    frames = []
    for index in range(first, sequence_length):
        noise_rng = np.random.default_rng([seed, subject, 1 + label, 1 + index])
        noise = noise_rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE), np.float32) * 2.5
        pose = peak.scaled(np.full(len(OPACITY_FIELDS), intensities[index]))
        image, regions, face = render(identity, pose, smirk_side, REGIONS[name], jitters[index],
                                      noise)
        frames.append(Frame(subject_id(subject), label, index, float(intensities[index]),
                            image, regions, face))
    return frames


def generate(seed: int, subjects: int, frames: int, sequence_length: int) -> Iterator[Frame]:
    """Every subject's sequence of every class, last `frames` frames each, in that order."""
    for subject in range(subjects):
        for label in range(len(CLASSES)):
            yield from render_sequence(seed, subject, label, sequence_length, keep=frames)
