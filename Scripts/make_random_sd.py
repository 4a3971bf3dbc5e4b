#!/usr/bin/env python3
"""Builds a full-size Stable Diffusion folder with random weights, offline: the real SD1.5, SD2.1 or
SDXL base 1.0 architectures and configs written out below (SDXL: UNet 320/640/1280 with
transformer depth [1, 2, 10] and the text_time add_embedding, 2.57B parameters; CLIP ViT-L/14 and
OpenCLIP ViT-bigG/14 with projection, 123M + 695M; VAE with scaling_factor 0.13025), (UNet 320/640/1280/1280, ~860M parameters; CLIP ViT-L/14
text encoder, 123M, or OpenCLIP ViT-H's 23-layer text tower, 340M, for SD2.1; AutoencoderKL
128/256/512/512, 84M), the real CLIP tokenizer (Scripts/build_clip_tokenizer.py), the real
scheduler_config.json, no safety checker. For benchmarks and load tests: same shapes, same file layout
(diffusers save_pretrained, safetensors, text encoder keys spelled `text_model.*` as in real SD folders),
meaningless images.

Usage: python Scripts/make_random_sd.py OUT_DIR [--dtype float16|float32] [--variant sd15|sd21|sdxl] [--seed N]

Weights: linear/conv ~ N(0, 1/fan_in) (so activations keep their scale), embeddings ~ N(0, 0.02),
norm weights 1 and biases 0. Built on the meta device and filled in place, so a float16 SD1.5 takes
well under a minute and about 2 GB of memory (float32: 4 GB).
"""
import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

# runwayml/stable-diffusion-v1-5
SD15 = {
    "text_encoder": dict(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
        bos_token_id=0, eos_token_id=2, pad_token_id=1, attention_dropout=0.0, dropout=0.0,
        initializer_factor=1.0, initializer_range=0.02,
    ),
    "unet": dict(
        sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
        mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768,
        attention_head_dim=8,
    ),
    "vae": dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
    ),
    "pad_token": "<|endoftext|>",
    "legacy_position_ids": True,
}

# stabilityai/stable-diffusion-2-1 (768-v)
SD21 = {
    "text_encoder": dict(
        vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
        max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=512,
        bos_token_id=0, eos_token_id=2, pad_token_id=1, attention_dropout=0.0, dropout=0.0,
        initializer_factor=1.0, initializer_range=0.02,
    ),
    "unet": dict(
        sample_size=96, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
        mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, upcast_attention=True,
        dual_cross_attention=False, only_cross_attention=False, num_class_embeds=None,
    ),
    "vae": dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=768, scaling_factor=0.18215,
    ),
    "pad_token": "!",
    "legacy_position_ids": False,
}


# stabilityai/stable-diffusion-xl-base-1.0
SDXL = {
    "text_encoder": dict(SD15["text_encoder"]),
    "text_encoder_2": dict(
        vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
        max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1280,
        bos_token_id=0, eos_token_id=2, pad_token_id=1, attention_dropout=0.0, dropout=0.0,
        initializer_factor=1.0, initializer_range=0.02,
    ),
    "unet": dict(
        sample_size=128, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
        act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    ),
    "vae": dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=1024, scaling_factor=0.13025,
        force_upcast=True,
    ),
    "pad_token": "<|endoftext|>",
    "pad_token_2": "!",
    "legacy_position_ids": False,
}


def random_fill_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Fills every parameter in place (module already allocated, any dtype)."""
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    norm_params = {id(p) for m in module.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    embedding_params = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding)}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if id(p) in norm_params:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif id(p) in embedding_params:
                p.normal_(0.0, 0.02, generator=generator)
            elif p.dim() >= 2:
                fan_in = math.prod(p.shape[1:])
                p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
            else:
                p.zero_()


def materialize(module: torch.nn.Module, dtype, generator) -> torch.nn.Module:
    module = module.to(dtype).to_empty(device="cpu")
    random_fill_(module, generator)
    # Non-persistent buffers (not saved) are garbage after to_empty; fix the one CLIP uses.
    for name, buf in module.named_buffers():
        if name.endswith("position_ids"):
            buf.copy_(torch.arange(buf.shape[-1]).expand_as(buf))
    return module.eval()


def build(out_dir: Path, variant: str, dtype: torch.dtype, seed: int = 0) -> None:
    from build_clip_tokenizer import build as build_tokenizer
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from fixtures.models import SD15_SCHEDULER, SD21_SCHEDULER, legacy_text_encoder
    from fixtures.sdxl import XL_SCHEDULER as SDXL_SCHEDULER
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    spec = {"sd15": SD15, "sd21": SD21, "sdxl": SDXL}[variant]
    sched_json = {"sd15": SD15_SCHEDULER, "sd21": SD21_SCHEDULER, "sdxl": SDXL_SCHEDULER}[variant]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    build_tokenizer(out_dir / "tokenizer", spec["pad_token"])
    tokenizer = CLIPTokenizer.from_pretrained(out_dir / "tokenizer")

    g = torch.Generator("cpu").manual_seed(seed)
    t0 = time.time()
    with torch.device("meta"):
        text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text_encoder"]))
        if "text_encoder_2" in spec:
            from transformers import CLIPTextModelWithProjection
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**spec["text_encoder_2"]))
        unet = UNet2DConditionModel(**spec["unet"])
        vae = AutoencoderKL(**spec["vae"])
    text_encoder = materialize(text_encoder, dtype, g)
    unet = materialize(unet, dtype, g)
    vae = materialize(vae, dtype, g)
    if "text_encoder_2" in spec:
        text_encoder_2 = materialize(text_encoder_2, dtype, g)
        build_sdxl(out_dir, spec, sched_json, text_encoder, text_encoder_2, unet, vae, dtype, t0)
        return
    scheduler_cls = {"sd15": PNDMScheduler, "sd21": DDIMScheduler}[variant]
    scheduler = scheduler_cls.from_config(sched_json)
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("text_encoder", text_encoder), ("unet", unet), ("vae", vae))}
    print(f"built in {time.time() - t0:.1f}s: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items()), flush=True)

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    t0 = time.time()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    shutil.rmtree(out_dir / "tokenizer")
    build_tokenizer(out_dir / "tokenizer", spec["pad_token"])
    (out_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched_json, indent=2) + "\n")
    legacy_text_encoder(out_dir / "text_encoder", spec["legacy_position_ids"], dtype)
    print(f"saved in {time.time() - t0:.1f}s to {out_dir}", flush=True)


def build_sdxl(out_dir, spec, sched_json, text_encoder, text_encoder_2, unet, vae, dtype, t0) -> None:
    from build_clip_tokenizer import build as build_tokenizer
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2), ("unet", unet), ("vae", vae))}
    print(f"built in {time.time() - t0:.1f}s: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items()), flush=True)
    build_tokenizer(out_dir / "tokenizer_2", spec["pad_token_2"])
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=CLIPTokenizer.from_pretrained(out_dir / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(out_dir / "tokenizer_2"), unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(sched_json))
    t0 = time.time()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    for folder, pad in (("tokenizer", spec["pad_token"]), ("tokenizer_2", spec["pad_token_2"])):
        shutil.rmtree(out_dir / folder)
        build_tokenizer(out_dir / folder, pad)
    (out_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched_json, indent=2) + "\n")
    print(f"saved in {time.time() - t0:.1f}s to {out_dir}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--variant", choices=["sd15", "sd21", "sdxl"], default="sd15")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers.utils import logging as dlogging
    dlogging.set_verbosity_error()
    build(args.out_dir, args.variant, getattr(torch, args.dtype), args.seed)


if __name__ == "__main__":
    main()
