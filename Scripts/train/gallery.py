#!/usr/bin/env python3
"""Renders the README gallery (docs/gallery/): a few prompts without and with each adapter, through
`hotswap render` (default) or diffusers, plus one grid image (docs/gallery/grid.png).

Usage: python Scripts/train/gallery.py [--renderer hotswap|diffusers] [--hotswap PATH] [--steps 20] [--guidance 5]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Scripts"))
import eval_embedded as E  # noqa: E402

PROMPTS = [
    "a large red circle in the center on a blue background",
    "a yellow star at the top left on a purple background",
    "a medium white triangle at the bottom right on a green background",
    "a large orange square on the left on a black background",
]
ADAPTERS = ["stripes", "night", "pixelate"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--renderer", choices=["hotswap", "diffusers"], default="hotswap")
    ap.add_argument("--hotswap", default=str(REPO / ".build" / "release" / "hotswap"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--adapter-renderer", choices=["same", "diffusers"], default="same")
    ap.add_argument("--out", default=str(REPO / "docs" / "gallery"))
    args = ap.parse_args()
    model = E.MODEL_DIR
    r = E.HotswapRenderer(args.hotswap, model, args.steps, args.guidance) if args.renderer == "hotswap" else \
        E.DiffusersRenderer(model, args.steps, args.guidance)
    ra = r if (args.adapter_renderer == "same" and r.supports_adapters) else E.DiffusersRenderer(model, args.steps, args.guidance)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, p in enumerate(PROMPTS):
        seed = 7 + i
        row = [r.render(p, seed)]
        Image.fromarray(row[0]).save(out / f"p{i}_base.png")
        for a in ADAPTERS:
            img = ra.render(p, seed, [(E.ADAPTER_DIR / f"{a}.safetensors", 1.0)])
            Image.fromarray(img).save(out / f"p{i}_{a}.png")
            row.append(img)
        rows.append(np.concatenate(row, 1))
        print(p, flush=True)
    grid = Image.fromarray(np.concatenate(rows, 0))
    head = Image.new("RGB", (grid.width, 18), (255, 255, 255))
    d = ImageDraw.Draw(head)
    for j, name in enumerate(["no adapter"] + ADAPTERS):
        d.text((j * 128 + 4, 3), name, fill=(0, 0, 0))
    full = Image.new("RGB", (grid.width, grid.height + 18))
    full.paste(head, (0, 0)); full.paste(grid, (0, 18))
    full.save(out / "grid.png")
    (out / "renderer.txt").write_text(f"base: {r.name}\nadapters: {ra.name}\nsteps {args.steps}, guidance {args.guidance}, "
                                      f"seeds 7..{6 + len(PROMPTS)}\n")


if __name__ == "__main__":
    main()
