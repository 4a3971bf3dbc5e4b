#!/usr/bin/env python3
"""Random rank-r LoRA adapters for a Stable Diffusion folder, for benchmarks (no download).

    venv/bin/python Scripts/make_random_lora.py --model /work/models/sd15-f32 --out /tmp/loras \
        [--rank 8] [--format peft|kohya] [--name attn8] [--seed 0] [--targets attn|attn+ff]

Targets the UNet attention projections (to_q, to_k, to_v, to_out.0 of attn1 and attn2) and the
text encoder's q_proj, k_proj, v_proj, out_proj (plus ff.* / mlp.fc* with --targets attn+ff); on an
SDXL folder (one with text_encoder_2) both text encoders.
peft: written with StableDiffusionPipeline.save_lora_weights (StableDiffusionXLPipeline's for SDXL,
text_encoder_2 included; rank/alpha metadata, alpha = rank);
kohya (SD1.x/SD2.x folders only): `lora_unet_...` / `lora_te_text_model_...` with `.alpha` tensors. Weights are F16 like most
published adapters (the up weights random and non-zero, so the adapter changes the image).
"""
import argparse
import json
from pathlib import Path

import torch


def module_shapes(model_dir: Path, targets: str):
    """[(component, module name, (out, in))] from the configs alone (no weights loaded)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model_dir / "unet"))
        encoders = {c: CLIPTextModel(CLIPTextConfig.from_pretrained(model_dir / c))
                    for c in ("text_encoder", "text_encoder_2") if (model_dir / c / "config.json").exists()}
    unet_suffix = (".to_q", ".to_k", ".to_v", ".to_out.0") + ((".ff.net.0.proj", ".ff.net.2") if "ff" in targets else ())
    te_suffix = (".q_proj", ".k_proj", ".v_proj", ".out_proj") + ((".mlp.fc1", ".mlp.fc2") if "ff" in targets else ())
    out = []
    for name, mod in unet.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.endswith(unet_suffix):
            out.append(("unet", name, tuple(mod.weight.shape)))
    for comp, te in encoders.items():
        for name, mod in te.named_modules():
            if isinstance(mod, torch.nn.Linear) and name.endswith(te_suffix):
                out.append((comp, name.removeprefix("text_model."), tuple(mod.weight.shape)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--format", choices=["peft", "kohya"], default="peft")
    p.add_argument("--name", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="attn")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    gen = torch.Generator().manual_seed(a.seed)
    name = a.name or f"{a.format}-r{a.rank}"
    a.out.mkdir(parents=True, exist_ok=True)
    layers = {"unet": {}, "text_encoder": {}, "text_encoder_2": {}}
    xl = (a.model / "text_encoder_2" / "config.json").exists()
    if xl and a.format == "kohya":
        raise SystemExit("--format kohya is for SD1.x/SD2.x folders; use peft for SDXL")
    kohya = {}
    r = a.rank
    for comp, mod, (out_f, in_f) in module_shapes(a.model, a.targets):
        down = (torch.randn(r, in_f, generator=gen) / in_f ** 0.5).to(dtype)
        up = (torch.randn(out_f, r, generator=gen) * 0.05 / r ** 0.5).to(dtype)
        if a.format == "peft":
            layers[comp][f"{mod}.lora_A.weight"] = down
            layers[comp][f"{mod}.lora_B.weight"] = up
        else:
            k = ("lora_unet_" if comp == "unet" else "lora_te_text_model_") + mod.replace(".", "_")
            kohya[f"{k}.lora_down.weight"] = down
            kohya[f"{k}.lora_up.weight"] = up
            kohya[f"{k}.alpha"] = torch.tensor(float(r), dtype=dtype)
    path = a.out / f"{name}.safetensors"
    if a.format == "peft":
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        def meta(comp):
            return {"r": r, "lora_alpha": r, "target_modules": sorted({k.rsplit(".lora_", 1)[0] for k in layers[comp]})}
        extra = {}
        if xl:
            extra = dict(text_encoder_2_lora_layers=layers["text_encoder_2"],
                         text_encoder_2_lora_adapter_metadata=meta("text_encoder_2"))
        (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).save_lora_weights(
            a.out, unet_lora_layers=layers["unet"], text_encoder_lora_layers=layers["text_encoder"],
            unet_lora_adapter_metadata=meta("unet"), text_encoder_lora_adapter_metadata=meta("text_encoder"),
            weight_name=path.name, safe_serialization=True, **extra)
    else:
        from safetensors.torch import save_file
        save_file(kohya, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(r)})
    n = sum(len(v) for v in layers.values()) // 2 or len(kohya) // 3
    print(json.dumps({"file": str(path), "format": a.format, "rank": r, "modules": n, "bytes": path.stat().st_size}))


if __name__ == "__main__":
    main()
