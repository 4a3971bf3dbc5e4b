#!/usr/bin/env python3
"""Stage 3: assembles Models/hotswap-shapes/ (diffusers StableDiffusionPipeline layout, F16 safetensors,
text encoder keys spelled `text_model.*` like real SD folders, the real CLIP tokenizer, the default
scheduler config) from the trained VAE, text encoder and UNet."""
import argparse
import json
import shutil
from pathlib import Path

import torch

from common import REPO, SCHEDULER_CONFIG, SCRATCH, Log, setup_torch


def export(vae_dir: Path, unet_dir: Path, out: Path, log=print):
    from build_clip_tokenizer import build as build_tokenizer
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from fixtures.models import legacy_text_encoder
    from transformers import CLIPTextModel, CLIPTokenizer

    if out.exists():
        shutil.rmtree(out)
    tmp_tok = SCRATCH / "tokenizer_export"
    build_tokenizer(tmp_tok, "<|endoftext|>")
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(vae_dir),
        text_encoder=CLIPTextModel.from_pretrained(unet_dir / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(tmp_tok),
        unet=UNet2DConditionModel.from_pretrained(unet_dir / "unet"),
        scheduler=DPMSolverMultistepScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)
    shutil.rmtree(out / "tokenizer")
    build_tokenizer(out / "tokenizer", "<|endoftext|>")
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2) + "\n")
    legacy_text_encoder(out / "text_encoder", False, torch.float16)
    # loading check
    back = StableDiffusionPipeline.from_pretrained(out, torch_dtype=torch.float16)
    for comp in ("text_encoder", "unet", "vae"):
        a, b = getattr(pipe, comp).state_dict(), getattr(back, comp).state_dict()
        assert set(a) == set(b), (comp, set(a) ^ set(b))
        for k in a:
            assert torch.equal(a[k], b[k]), f"{comp}.{k} differs after reload"
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"exported {out} ({size / 1e6:.1f} MB)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", default=str(SCRATCH / "vae" / ("final_ft" if (SCRATCH / "vae" / "final_ft" / "done.json").exists() else "final")))
    ap.add_argument("--unet", default=str(SCRATCH / "unet" / "final"))
    ap.add_argument("--out", default=str(REPO / "Models" / "hotswap-shapes"))
    args = ap.parse_args()
    setup_torch()
    from diffusers.utils import logging as dlogging
    dlogging.set_verbosity_error()
    export(Path(args.vae), Path(args.unet), Path(args.out), Log("export"))


if __name__ == "__main__":
    main()
