#!/usr/bin/env python3
"""Procedural shapes dataset for the hotswap-shapes model.

Images (128x128 RGB) of one or two flat shapes (circle, square, triangle, star) in named colours, sizes
and positions on a flat coloured background, with captions that say so:
    "a small red circle at the top left on a blue background"
    "a yellow star on the left and a green square on the right on a black background"
Everything is deterministic from an integer seed (numpy Generator, PIL drawing, no antialiasing noise
beyond PIL's own). A fixed set of (shape colour, shape, background colour) triples is held out: training
never draws them (not even as one of two shapes); `heldout_specs()` gives evaluation prompts built from them.

Styles (used for the LoRA adapters and for the VAE's training mix):
    plain    filled shapes on a flat background (the base model)
    outline  the same shapes drawn as closed strokes of even width (the inside shows the background)
    night    dark palette: background dimmed towards navy, shapes dimmed
    stripes  horizontal stripes on the background (16 px bands, period 32 px)
    pixelate a mosaic of 16x16 px blocks (8x8 of them), each the mean colour of its pixels
"""
import hashlib
import math

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128

COLORS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 30),
    "green": (30, 165, 50),
    "cyan": (30, 210, 225),
    "blue": (30, 60, 220),
    "purple": (135, 45, 185),
    "pink": (250, 140, 200),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle", "star"]
SIZES = {"small": 16, "medium": 26, "large": 36}  # "radius" in pixels: a large star spans 9 of the 16 latent pixels
SIZE_NAMES = list(SIZES)
# name -> (cx, cy) as fractions of the image
POSITIONS = {
    "at the top left": (0.25, 0.25),
    "at the top": (0.5, 0.25),
    "at the top right": (0.75, 0.25),
    "on the left": (0.25, 0.5),
    "in the center": (0.5, 0.5),
    "on the right": (0.75, 0.5),
    "at the bottom left": (0.25, 0.75),
    "at the bottom": (0.5, 0.75),
    "at the bottom right": (0.75, 0.75),
}
POSITION_NAMES = list(POSITIONS)
STYLES = ["plain", "outline", "night", "stripes", "pixelate"]


def is_heldout(color: str, shape: str, bg: str) -> bool:
    """About 8% of the (colour, shape, background) triples are kept for evaluation only."""
    h = hashlib.sha256(f"{color}|{shape}|{bg}".encode()).digest()
    return h[0] % 12 == 0


def heldout_triples():
    return [(c, s, b) for c in COLOR_NAMES for s in SHAPES for b in COLOR_NAMES if c != b and is_heldout(c, s, b)]


def _poly(shape, cx, cy, r):
    if shape == "square":
        s = r  # as wide as the circle: its corners stand out of the circle's outline by 0.41 r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        # upward equilateral-ish triangle, centred on its bounding box
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a) + r * 0.08))
        return pts
    raise ValueError(shape)


def draw_shape(draw, shape, cx, cy, r, fill):
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_poly(shape, cx, cy, r), fill=fill)


def outline_width(shape, r):
    """Stroke of the `outline` style, as thick as still leaves the inside showing: 4/6/9 px for
    small/medium/large circles, squares and triangles (an adapter trained on 4/6/9 px strokes hollowed
    45% of the evaluation's shapes, one trained on 3/4/6 px 35%), 3/4/6 px for stars, whose arms are
    only 0.5 r wide: at 0.25 r a small star would keep 17% of its inside and a large one 12%, against
    29-37% now."""
    return max(3, int(round(r * (0.17 if shape == "star" else 0.25))))


def _erode(mask: np.ndarray, w: int) -> np.ndarray:
    """Pixels of `mask` whose whole disk of radius w lies in `mask`."""
    h, wd = mask.shape
    pad = np.pad(mask, w)
    out = mask.copy()
    for dy in range(-w, w + 1):
        for dx in range(-w, w + 1):
            if dy * dy + dx * dx <= w * w:
                out &= pad[w + dy:w + dy + h, w + dx:w + dx + wd]
    return out


def draw_outlined(img, shape, cx, cy, r, fill, bg):
    """The shape as a closed stroke of even width along its edge, the inside showing the background. (A
    shrunken copy of the shape in the background colour, the earlier way, left strokes under 1 px at a
    star's inner corners and a triangle's tips.)"""
    silhouette = Image.new("L", img.size, 0)
    draw_shape(ImageDraw.Draw(silhouette), shape, cx, cy, r, 255)
    inside = _erode(np.asarray(silhouette) > 127, outline_width(shape, r))
    img.paste(fill, mask=silhouette)
    img.paste(bg, mask=Image.fromarray(inside.astype(np.uint8) * 255))


def _dim(c, f, add=(0, 0, 0)):
    return tuple(int(min(255, max(0, v * f + a))) for v, a in zip(c, add))


def render(spec: dict, style: str = "plain") -> Image.Image:
    """spec: {"bg": name, "objects": [{"color", "shape", "size", "pos", "cx", "cy"}...]} -> PIL image."""
    bg = COLORS[spec["bg"]]
    if style == "night":
        bg_draw = _dim(bg, 0.22, (8, 10, 40))
    else:
        bg_draw = bg
    img = Image.new("RGB", (SIZE, SIZE), bg_draw)
    draw = ImageDraw.Draw(img)
    if style == "stripes":
        dark = _dim(bg, 0.55) if sum(bg) > 150 else _dim(bg, 1.0, (90, 90, 90))
        for y in range(0, SIZE, 32):
            draw.rectangle([0, y + 16, SIZE - 1, y + 31], fill=dark)
    for o in spec["objects"]:
        col = COLORS[o["color"]]
        if style == "night":
            col = _dim(col, 0.6, (0, 0, 20))
        r = SIZES[o["size"]]
        if style == "outline":
            draw_outlined(img, o["shape"], o["cx"], o["cy"], r, col, bg_draw)
        else:
            draw_shape(draw, o["shape"], o["cx"], o["cy"], r, col)
    if style == "pixelate":
        # 16x16 blocks, each the mean of its pixels: 2x2 latent cells, one cell of the UNet's second level.
        # (8 px blocks, one per latent cell, were learnt only as faint staircase edges: Models/README.md)
        img = img.resize((SIZE // 16, SIZE // 16), Image.BOX).resize((SIZE, SIZE), Image.NEAREST)
    return img


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption(spec: dict) -> str:
    parts = []
    for o in spec["objects"]:
        size = f"{o['size']} " if o.get("say_size", True) else ""
        parts.append(_a(f"{size}{o['color']} {o['shape']}") + f" {o['pos']}")
    return " and ".join(parts) + f" on {_a(spec['bg'])} background"


def _inside(v, size):
    """A centre coordinate moved so that a shape of this size stays inside the picture."""
    r = SIZES[size]
    return float(min(max(v, r + 1), SIZE - r - 2))


def _place(rng, pos, size):
    fx, fy = POSITIONS[pos]
    jitter = 4
    cx = fx * SIZE + rng.integers(-jitter, jitter + 1)
    cy = fy * SIZE + rng.integers(-jitter, jitter + 1)
    return _inside(cx, size), _inside(cy, size)


PAIRS = [("on the left", "on the right"), ("at the top", "at the bottom"),
         ("at the top left", "at the bottom right"), ("at the top right", "at the bottom left")]


def sample_spec(rng: np.random.Generator, two_prob: float = 0.15, allow_heldout: bool = False) -> dict:
    while True:
        bg = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
        n = 2 if rng.random() < two_prob else 1
        if n == 1:
            positions = [POSITION_NAMES[rng.integers(len(POSITION_NAMES))]]
            sizes = [SIZE_NAMES[rng.integers(3)]]
        else:
            positions = list(PAIRS[rng.integers(len(PAIRS))])
            if rng.random() < 0.5:
                positions.reverse()
            sizes = [SIZE_NAMES[rng.integers(2)] for _ in range(2)]  # small/medium so they do not overlap
        objs = []
        ok = True
        for pos, size in zip(positions, sizes):
            col = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
            if col == bg:
                ok = False
                break
            shape = SHAPES[rng.integers(len(SHAPES))]
            if not allow_heldout and is_heldout(col, shape, bg):
                ok = False
                break
            cx, cy = _place(rng, pos, size)
            objs.append(dict(color=col, shape=shape, size=size, pos=pos, cx=cx, cy=cy,
                             say_size=bool(rng.random() < 0.8)))
        if ok:
            return {"bg": bg, "objects": objs}


def make_dataset(n: int, seed: int, style_mix=None):
    """Returns (uint8 array [n,128,128,3], list of captions, list of specs, list of styles)."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    caps, specs, styles = [], [], []
    for i in range(n):
        spec = sample_spec(rng)
        style = "plain"
        if style_mix:
            style = STYLES[rng.choice(len(STYLES), p=style_mix)]
        imgs[i] = np.asarray(render(spec, style))
        caps.append(caption(spec))
        specs.append(spec)
        styles.append(style)
    return imgs, caps, specs, styles


def heldout_specs(n: int, seed: int = 1234):
    """Single-shape evaluation specs whose (colour, shape, background) triple was never trained on."""
    rng = np.random.default_rng(seed)
    triples = heldout_triples()
    specs = []
    for i in range(n):
        col, shape, bg = triples[i % len(triples)]
        pos = POSITION_NAMES[rng.integers(len(POSITION_NAMES))]
        size = SIZE_NAMES[1 + rng.integers(2)]  # medium or large: measurable
        # the centre of the named cell, kept inside the picture as in training (_place, without the jitter)
        cx, cy = (_inside(f * SIZE, size) for f in POSITIONS[pos])
        specs.append({"bg": bg, "objects": [dict(color=col, shape=shape, size=size, pos=pos, cx=cx, cy=cy)]})
    return specs


if __name__ == "__main__":
    import sys
    from pathlib import Path
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/shapes_preview")
    out.mkdir(parents=True, exist_ok=True)
    imgs, caps, specs, _ = make_dataset(8, 0)
    tiles = []
    for style in STYLES:
        row = np.concatenate([np.asarray(render(s, style)) for s in specs], 1)
        tiles.append(row)
    Image.fromarray(np.concatenate(tiles, 0)).save(out / "preview.png")
    print("\n".join(caps))
    print(len(heldout_triples()), "held-out triples of", len(COLOR_NAMES) * (len(COLOR_NAMES) - 1) * len(SHAPES))
