"""Small image sets where the right ``augment.flips`` is known (for tests of flips: auto).

- ``arrows``: an arrow pointing up, down, left or right; the direction is the label, so a
  flipped copy carries the wrong label (right answer: none).
- ``rotated_glyphs``: tiled asymmetric glyphs (the class), each image shown in one of the
  8 orientations at random; orientation carries nothing (right answer: all).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ARROW = [
    (0.5, 0.1),
    (0.85, 0.45),
    (0.62, 0.45),
    (0.62, 0.9),
    (0.38, 0.9),
    (0.38, 0.45),
    (0.15, 0.45),
]
GLYPHS = {  # polygons in a unit cell; none of them is mirror- or rotation-symmetric
    "ell": [(0.1, 0.1), (0.35, 0.1), (0.35, 0.65), (0.9, 0.65), (0.9, 0.9), (0.1, 0.9)],
    "flag": [(0.1, 0.1), (0.9, 0.1), (0.9, 0.45), (0.35, 0.45), (0.35, 0.9), (0.1, 0.9)],
    "step": [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.1, 0.9)],
    "wedge": [(0.1, 0.1), (0.9, 0.9), (0.1, 0.9)],
}
DIRECTIONS = {"up": 0, "left": 1, "down": 2, "right": 3}  # quarter turns counter-clockwise


def _canvas(rng, size):
    background = rng.integers(0, 90, 3)
    noise = rng.integers(0, 40, (size, size, 3))
    return Image.fromarray(np.clip(background + noise, 0, 255).astype("uint8"))


def _polygon(points, scale, offset):
    return [(offset[0] + x * scale, offset[1] + y * scale) for x, y in points]


def arrow_image(direction, rng, size=64):
    image = _canvas(rng, size)
    scale = size * rng.uniform(0.6, 0.9)
    offset = rng.uniform(0, size - scale, 2)
    colour = tuple(int(c) for c in rng.integers(150, 256, 3))
    ImageDraw.Draw(image).polygon(_polygon(ARROW, scale, offset), fill=colour)
    return image.rotate(90 * DIRECTIONS[direction])


def glyph_image(glyph, rng, size=64):
    image = _canvas(rng, size)
    draw = ImageDraw.Draw(image)
    cell = size / 3
    colour = tuple(int(c) for c in rng.integers(150, 256, 3))
    for row in range(3):
        for col in range(3):
            jitter = rng.uniform(-0.05, 0.05, 2) * cell
            draw.polygon(
                _polygon(
                    GLYPHS[glyph], cell * 0.9, (col * cell + jitter[0], row * cell + jitter[1])
                ),
                fill=colour,
            )
    array = np.rot90(np.asarray(image), int(rng.integers(4)))
    if rng.random() < 0.5:
        array = array[:, ::-1]
    return Image.fromarray(np.ascontiguousarray(array))


def write_set(root, kind, per_class, size=64, seed=0):
    """``root/<class>/<i>.png``: ``kind`` is arrows or rotated_glyphs."""
    rng = np.random.default_rng(seed)
    classes, draw = (DIRECTIONS, arrow_image) if kind == "arrows" else (GLYPHS, glyph_image)
    for name in classes:
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(name, rng, size).save(folder / f"{i:03d}.png")
    return Path(root)
