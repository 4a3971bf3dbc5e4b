#!/usr/bin/env python3
"""Stage 2: trains the CLIP text encoder (real CLIP vocabulary, from scratch) and the UNet together on
cached VAE latents of procedural images (epsilon objective, SD's scaled_linear schedule, offset noise,
min-SNR weighting, 10% empty captions for classifier-free guidance, horizontal flips with left/right
swapped in the caption). Keeps an EMA of both; the EMA weights are exported.

Resumable: SCRATCH/unet/ckpt.pt every --ckpt-every steps. Output: SCRATCH/unet/final/{unet,text_encoder}.
"""
import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import SCRATCH, TEXT_CONFIG, UNET_CONFIG, Log, fast_attention, save_ckpt, setup_torch
import dataset


def flip_caption(c: str) -> str:
    return c.replace("left", "\0").replace("right", "left").replace("\0", "right")


def tokenizer():
    from transformers import CLIPTokenizer
    from build_clip_tokenizer import build
    d = SCRATCH / "tokenizer"
    if not (d / "vocab.json").exists():
        build(d, "<|endoftext|>")
    return CLIPTokenizer.from_pretrained(d)


def tokenize(tok, caps):
    return tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


@torch.no_grad()
def encode_latents(vae, imgs_u8, log, bs=32):
    out = []
    for i in range(0, len(imgs_u8), bs):
        x = torch.from_numpy(imgs_u8[i:i + bs]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
        if (i // bs) % 50 == 0:
            log(f"encoded {i + len(x)}/{len(imgs_u8)}")
    return torch.cat(out)


def cached_data(name, n, seed, style, vae_dir, log, half=False):
    """latents [n,4,16,16], flipped latents, ids, flipped ids for a dataset drawn with `style`. With `half`,
    also the latents of the half-strength style (the plain and the styled picture averaged pixel by pixel),
    the adapters' target at LoRA scale 0.5."""
    f = SCRATCH / "cache" / f"{name}.pt"
    if f.exists():
        d = torch.load(f)
        if not half or "lat_h" in d:
            return d
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, dataset.SIZE, dataset.SIZE, 3), np.uint8)
    halves = np.zeros_like(imgs) if half else None
    caps = []
    for i in range(n):
        spec = dataset.sample_spec(rng)
        imgs[i] = np.asarray(dataset.render(spec, style))
        if half:
            plain = np.asarray(dataset.render(spec, "plain")).astype(np.uint16)
            halves[i] = ((plain + imgs[i] + 1) // 2).astype(np.uint8)
        caps.append(dataset.caption(spec))
    lat = encode_latents(vae, imgs, log)
    lat_f = encode_latents(vae, np.ascontiguousarray(imgs[:, :, ::-1]), log)
    tok = tokenizer()
    d = {"lat": lat, "lat_f": lat_f, "ids": tokenize(tok, caps), "ids_f": tokenize(tok, [flip_caption(c) for c in caps]),
         "caps": caps}
    if half:
        d["lat_h"] = encode_latents(vae, halves, log)
        d["lat_hf"] = encode_latents(vae, np.ascontiguousarray(halves[:, :, ::-1]), log)
    f.parent.mkdir(parents=True, exist_ok=True)
    torch.save(d, f)
    return d


def noise_schedule():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def diffusion_loss(unet, enc, lat, alphas_cumprod, g, offset=0.3, snr_gamma=5.0, high_t=0.3):
    """Epsilon loss with offset noise (per-sample, per-channel constant added to the noise: without it the
    background colour can be read off the noise's mean even at t=999 and the model learns to ignore the
    prompt's background colour) and a share `high_t` of the batch drawn from t in [600, 1000), where layout
    and colours are decided."""
    b = lat.shape[0]
    t = torch.randint(0, 1000, (b,), generator=g)
    hi = torch.rand(b, generator=g) < high_t
    t[hi] = torch.randint(600, 1000, (int(hi.sum()),), generator=g)
    noise = torch.randn(lat.shape, generator=g)
    if offset:
        noise = noise + offset * torch.randn(b, lat.shape[1], 1, 1, generator=g)
    a = alphas_cumprod[t].view(b, 1, 1, 1)
    noisy = a.sqrt() * lat + (1 - a).sqrt() * noise
    pred = unet(noisy, t, encoder_hidden_states=enc).sample
    per = F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3))
    snr = a.view(b) / (1 - a.view(b))
    w = torch.clamp(snr, max=snr_gamma) / snr
    return (per * w).mean(), per.mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=3500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (and export) after this long")
    ap.add_argument("--vae", default=str(SCRATCH / "vae" / "final"))
    ap.add_argument("--out", default=str(SCRATCH / "unet"))
    args = ap.parse_args()
    setup_torch()
    log = Log("unet")
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "final"
    if (final / "done.json").exists():
        log("already trained; skipping")
        return

    data = cached_data("plain", args.images, args.seed, "plain", args.vae, log)
    lat = torch.cat([data["lat"], data["lat_f"]])
    ids = torch.cat([data["ids"], data["ids_f"]])
    empty = tokenize(tokenizer(), [""])[0]
    log(f"latents {tuple(lat.shape)} mean {lat.mean():.3f} std {lat.std():.3f}")

    torch.manual_seed(args.seed)
    te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    fast_attention(unet, te)
    log(f"params: text encoder {sum(p.numel() for p in te.parameters()) / 1e6:.2f}M "
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M")
    params = list(te.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))))
    ema_te, ema_unet = copy.deepcopy(te).eval(), copy.deepcopy(unet).eval()
    for p in list(ema_te.parameters()) + list(ema_unet.parameters()):
        p.requires_grad_(False)
    step, elapsed = 0, 0.0
    ck = out / "ckpt.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        te.load_state_dict(st["te"]); unet.load_state_dict(st["unet"])
        ema_te.load_state_dict(st["ema_te"]); ema_unet.load_state_dict(st["ema_unet"])
        opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        step, elapsed = st["step"], st.get("elapsed", 0.0)
        log(f"resumed at step {step}")
    ac = noise_schedule()
    g = torch.Generator().manual_seed(args.seed * 7919 + step)
    te.train(); unet.train()
    t0 = time.time(); tlast = t0
    ema_loss = None
    hist = []
    while step < args.steps:
        idx = torch.randint(len(lat), (args.batch,), generator=g)
        x, tid = lat[idx], ids[idx].clone()
        drop = torch.rand(args.batch, generator=g) < 0.1
        tid[drop] = empty
        enc = te(tid).last_hidden_state
        loss, raw = diffusion_loss(unet, enc, x, ac, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step()
        step += 1
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for m, e in ((te, ema_te), (unet, ema_unet)):
                for p, q in zip(m.parameters(), e.parameters()):
                    q.lerp_(p, 1 - d)
        ema_loss = raw.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * raw.item()
        if step % 25 == 0:
            if torch.get_num_threads() == 1 and "HOTSWAP_TRAIN_THREADS" not in os.environ and \
                    (SCRATCH / "vae" / "final_ft" / "done.json").exists():
                # the decoder fine-tune that shared the machine has finished: take the second core
                torch.set_num_threads(2)
                log("decoder fine-tune done: 2 threads from here")
            now = time.time()
            log(f"step {step}/{args.steps} loss {ema_loss:.4f} lr {sched.get_last_lr()[0]:.2e} {(now - tlast) / 25:.2f}s/step")
            tlast = now
            hist.append((step, ema_loss))
        run_elapsed = elapsed + time.time() - t0
        stop = args.max_minutes and run_elapsed > args.max_minutes * 60
        if step % args.ckpt_every == 0 or step == args.steps or stop:
            save_ckpt(ck, {"te": te.state_dict(), "unet": unet.state_dict(), "ema_te": ema_te.state_dict(),
                           "ema_unet": ema_unet.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                           "step": step, "elapsed": run_elapsed, "loss": ema_loss})
        if stop:
            log(f"time limit reached at step {step}")
            break
    ema_te.save_pretrained(final / "text_encoder", safe_serialization=True)
    ema_unet.save_pretrained(final / "unet", safe_serialization=True)
    (final / "done.json").write_text(json.dumps({"steps": step, "loss_ema": ema_loss,
                                                 "seconds": elapsed + time.time() - t0}, indent=2))
    log(f"done at step {step}: loss {ema_loss:.4f}")


if __name__ == "__main__":
    main()
