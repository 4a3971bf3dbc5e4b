#!/usr/bin/env python3
"""Stage 4: LoRA style adapters for hotswap-shapes (rank 8 on the UNet attention projections
to_q/to_k/to_v/to_out.0; `night` also adapts the text encoder's q/k/v/out projections, rank 4).

    stripes  horizontal stripes on the background     PEFT/diffusers format (save_lora_weights)
    night    dark navy palette                        kohya format (lora_unet_* / lora_te_*), UNet + text encoder
    pixelate a mosaic of 16x16 px blocks              PEFT/diffusers format
    outline  shapes drawn as closed strokes           PEFT/diffusers format; not shipped (train_all.sh skips it):
                                                      at scale 1 it breaks shapes into open strokes (Models/README.md)

The adapters are trained on the same captions as the base model (no trigger word): at scale 1 every
picture takes the style. A share of each batch (--half-share) is trained at LoRA scale 0.5 against the
half-strength style (plain and styled picture averaged), so that the effect scales with the user's scale. Resumable per adapter (SCRATCH/adapters/<name>/ckpt.pt).

    python train_adapters.py --prepare            # only cache the styled latents (can run beside train_unet.py)
    python train_adapters.py [--only night ...]   # train (needs SCRATCH/unet/final), write Models/adapters/
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch

from common import REPO, SCRATCH, Log, fast_attention, save_ckpt, setup_torch
from train_unet import cached_data, diffusion_loss, noise_schedule, tokenize, tokenizer

ADAPTERS = {
    # outline and stripes train longer: at 600 steps they changed their property in only 15% / 75% of
    # the evaluation's prompts (night 95%); pixelate longer still (with 8 px blocks, at 1000 steps 80% /
    # 50% at scale 1 / 0.5, at 2000 85% / 55%; 16 px blocks at 2000 steps on run 3's base,
    # threshold 0.1: 100% / 85%).
    "outline": dict(seed=11, fmt="peft", text_encoder=False, steps=1000),
    "pixelate": dict(seed=14, fmt="peft", text_encoder=False, steps=2000),
    "stripes": dict(seed=12, fmt="peft", text_encoder=False, steps=1000),
    "night": dict(seed=13, fmt="kohya", text_encoder=True, steps=600),
}
SHIPPED = ["stripes", "night", "pixelate"]  # what Models/adapters/ holds (outline: see the docstring)
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def kohya_state_dict(unet_sd: dict, te_sd: dict, unet_alpha: float, te_alpha: float) -> dict:
    """PEFT keys -> kohya-ss keys (lora_down/lora_up/alpha)."""
    out = {}
    for prefix, sd, alpha in (("lora_unet_", unet_sd, unet_alpha), ("lora_te_text_model_", te_sd, te_alpha)):
        for k, v in sd.items():
            k = k.replace(".default", "")
            for a, b in ((".lora_A.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_up.weight")):
                if k.endswith(a):
                    module = k[: -len(a)]
                    if module.startswith("text_model."):
                        module = module[len("text_model."):]
                    name = prefix + module.replace(".", "_")
                    out[name + b] = v
                    out[name + ".alpha"] = torch.tensor(float(alpha))
    return out


def train_one(name, spec, args, log):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextModel

    out_file = Path(args.out_dir) / f"{name}.safetensors"
    work = SCRATCH / "adapters" / name
    work.mkdir(parents=True, exist_ok=True)
    if (work / "done.json").exists() and out_file.exists():
        log(f"{name}: already trained")
        return
    steps = args.steps or spec["steps"]
    data = cached_data(name, args.images, spec["seed"], name, args.vae, log, half=True)
    lat = torch.cat([data["lat"], data["lat_f"]])
    lat_half = torch.cat([data["lat_h"], data["lat_hf"]])
    ids = torch.cat([data["ids"], data["ids_f"]])
    empty = tokenize(tokenizer(), [""])[0]
    unet = UNet2DConditionModel.from_pretrained(Path(args.base) / "unet")
    te = CLIPTextModel.from_pretrained(Path(args.base) / "text_encoder")
    fast_attention(unet, te)
    unet.requires_grad_(False); te.requires_grad_(False)
    torch.manual_seed(spec["seed"])
    ucfg = LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian", target_modules=UNET_TARGETS)
    unet.add_adapter(ucfg)
    params = [p for p in unet.parameters() if p.requires_grad]
    if spec["text_encoder"]:
        tcfg = LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=TE_TARGETS)
        te.add_adapter(tcfg)
        params += [p for p in te.parameters() if p.requires_grad]
    log(f"{name}: {sum(p.numel() for p in params)} trainable LoRA parameters")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    step, elapsed = 0, 0.0
    ck = work / "ckpt.pt"
    trainable = lambda: {k: v for m, pre in ((unet, "u."), (te, "t.")) for k, v in
                         ((pre + n, p) for n, p in m.named_parameters() if p.requires_grad)}
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        cur = trainable()
        with torch.no_grad():
            for k, v in st["lora"].items():
                cur[k].copy_(v)
        opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        step, elapsed = st["step"], st["elapsed"]
        log(f"{name}: resumed at step {step}")
    from peft.tuners.lora import LoraLayer
    lora_layers = [m for m in list(unet.modules()) + list(te.modules()) if isinstance(m, LoraLayer)]

    def set_scale(scale):
        for m in lora_layers:
            m.set_scale("default", scale)

    # Part of every batch is trained at LoRA scale 0.5 against the half-strength style, so that a user's
    # scale 0.5 gives about half the effect (without it the effect is far from linear in the scale:
    # stripes kept 3% of its change at 0.5).
    n_half = int(round(args.batch * args.half_share))
    parts = [(slice(0, args.batch - n_half), 1.0, lat), (slice(args.batch - n_half, args.batch), 0.5, lat_half)]
    ac = noise_schedule()
    g = torch.Generator().manual_seed(spec["seed"] * 7919 + step)
    unet.train(); te.train()
    t0 = time.time()
    ema = None
    while step < steps:
        idx = torch.randint(len(lat), (args.batch,), generator=g)
        tid = ids[idx].clone()
        tid[torch.rand(args.batch, generator=g) < 0.1] = empty
        opt.zero_grad(set_to_none=True)
        raw_sum = 0.0
        for part, scale, source in parts:
            if part.stop <= part.start:
                continue
            share = (part.stop - part.start) / args.batch
            set_scale(scale)
            enc = te(tid[part]).last_hidden_state
            loss, raw = diffusion_loss(unet, enc, source[idx[part]], ac, g)
            (loss * share).backward()
            raw_sum += raw.item() * share
        set_scale(1.0)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step()
        step += 1
        ema = raw_sum if ema is None else 0.95 * ema + 0.05 * raw_sum
        if step % 25 == 0:
            log(f"{name}: step {step}/{steps} loss {ema:.4f}")
        if step % 100 == 0 or step == steps:
            save_ckpt(ck, {"lora": {k: v.detach().clone() for k, v in trainable().items()}, "opt": opt.state_dict(),
                           "sched": sched.state_dict(), "step": step, "elapsed": elapsed + time.time() - t0})
    seconds = elapsed + time.time() - t0

    unet_sd = {k: v.to(torch.float16) for k, v in get_peft_model_state_dict(unet).items()}
    te_sd = {k: v.to(torch.float16) for k, v in get_peft_model_state_dict(te).items()} if spec["text_encoder"] else {}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if spec["fmt"] == "peft":
        tmp = work / "peft"
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=unet_sd, text_encoder_lora_layers=te_sd or None,
            unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
            text_encoder_lora_adapter_metadata=te.peft_config["default"].to_dict() if te_sd else None,
            weight_name="adapter.safetensors")
        (tmp / "adapter.safetensors").replace(out_file)
    else:
        from safetensors.torch import save_file
        sd = kohya_state_dict(unet_sd, te_sd, args.rank, 4)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(out_file), metadata={"format": "pt", "ss_network_dim": str(args.rank)})
    # check: diffusers' loader gives the same UNet/text-encoder outputs as the trained modules
    check(unet, te, out_file, args, log, name)
    (work / "done.json").write_text(json.dumps({"steps": step, "loss_ema": ema, "seconds": seconds}, indent=2))
    log(f"{name}: done, loss {ema:.4f}, {seconds:.0f}s -> {out_file}")


@torch.no_grad()
def check(unet, te, lora_file, args, log, name):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel
    from diffusers.utils import logging as dlogging
    dlogging.set_verbosity_error()
    unet.eval(); te.eval()
    base = Path(args.base)
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model,
        unet=UNet2DConditionModel.from_pretrained(base / "unet"),
        text_encoder=CLIPTextModel.from_pretrained(base / "text_encoder"), safety_checker=None)
    pipe.load_lora_weights(str(lora_file), adapter_name=name)
    fast_attention(pipe.unet, pipe.text_encoder)
    ids = tokenize(tokenizer(), ["a large red circle in the center on a blue background"])
    e1, e2 = te(ids).last_hidden_state, pipe.text_encoder(ids).last_hidden_state
    x = torch.randn(1, 4, 16, 16)
    t = torch.tensor(500)
    o1, o2 = unet(x, t, encoder_hidden_states=e1).sample, pipe.unet(x, t, encoder_hidden_states=e1).sample
    pipe.set_adapters([name], [0.0])
    o0 = pipe.unet(x, t, encoder_hidden_states=e1).sample
    d_te, d_unet, eff = (e1 - e2).abs().max().item(), (o1 - o2).abs().max().item(), (o1 - o0).abs().max().item()
    log(f"{name}: diffusers load check: text max diff {d_te:.2e}, unet max diff {d_unet:.2e} (adapter effect {eff:.2e})")
    assert d_te < 2e-2 and d_unet < 2e-2 * max(1.0, o1.abs().max().item()) and eff > 10 * d_unet, "LoRA reload mismatch"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=SHIPPED, choices=list(ADAPTERS))
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="all adapters (default: each one's own, ADAPTERS)")
    ap.add_argument("--half-share", type=float, default=0.375, help="share of each batch trained at LoRA scale 0.5")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=800)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--vae", default=str(SCRATCH / "vae" / "final"))
    ap.add_argument("--base", default=str(SCRATCH / "unet" / "final"))
    ap.add_argument("--model", default=str(REPO / "Models" / "hotswap-shapes"), help="exported base model (for the load check)")
    ap.add_argument("--out-dir", default=str(REPO / "Models" / "adapters"))
    args = ap.parse_args()
    setup_torch()
    log = Log("adapters")
    for name in args.only:
        if args.prepare:
            cached_data(name, args.images, ADAPTERS[name]["seed"], name, args.vae, log, half=True)
            log(f"{name}: latents cached")
        else:
            train_one(name, ADAPTERS[name], args, log)


if __name__ == "__main__":
    main()
