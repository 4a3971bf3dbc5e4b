#!/usr/bin/env python3
"""Stage 1: trains the small AutoencoderKL (8x down-sampling, 4 latent channels) on procedural images
(all styles, so it can also decode the adapters' outlines, stripes, night palette and mosaic), then encodes
the UNet training set to cached latents.

Resumable: the checkpoint (SCRATCH/vae/ckpt.pt) is written every --ckpt-every steps; re-running continues.
Outputs: SCRATCH/vae/final/ (diffusers AutoencoderKL folder, scaling_factor set to 1/std of the latents).

--finetune-decoder: stage 1b (runs beside the UNet training): the encoder (hence the latent space the
UNet learns) stays frozen and only the decoder keeps training, on the encoder's mean latents, with its own
resumable checkpoint; writes SCRATCH/vae/final_ft/, which the export prefers when it exists.
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import SCRATCH, VAE_CONFIG, Log, save_ckpt, setup_torch
import dataset


# share of each style in dataset.STYLES order (plain, outline, night, stripes, pixelate): the decoder must
# draw every adapter's style, not only the base model's plain pictures
STYLE_MIX = [0.4, 0.15, 0.15, 0.15, 0.15]


def to_tensor(u8):
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def edge_weights(x, weight):
    """1 + weight near colour edges (dilated by 2 px): the images are mostly flat background, so a plain
    per-pixel loss barely sees the thin star arms and triangle tips that tell the shapes apart."""
    if not weight:
        return None
    gy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().sum(1, keepdim=True)
    gx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum(1, keepdim=True)
    e = (F.pad(gy, (0, 0, 0, 1)) + F.pad(gx, (0, 1, 0, 0)) > 0.1).float()
    return 1.0 + weight * F.max_pool2d(e, 5, stride=1, padding=2)


def recon_loss(rec, x, w):
    d = rec - x
    per = d.pow(2) + 0.5 * d.abs()
    if w is None:
        return per.mean()
    return (per * w).mean() / w.mean()


@torch.no_grad()
def shape_class_accuracy(vae, n=80):
    """Share of held-out evaluation images whose reconstruction keeps its shape class
    (Scripts/eval_embedded.py's measurement): the ceiling for the whole model's shape adherence."""
    from eval_embedded import analyze
    specs = dataset.heldout_specs(n)
    imgs = np.stack([np.asarray(dataset.render(s)) for s in specs])
    rec = vae.decode(vae.encode(to_tensor(imgs)).latent_dist.mean).sample
    rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return sum(analyze(r)["shape"] == s["objects"][0]["shape"] for r, s in zip(rec, specs)) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--edge-weight", type=float, default=4.0, help="extra loss weight near colour edges")
    ap.add_argument("--channels", default=",".join(map(str, VAE_CONFIG["block_out_channels"])))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--out", default=str(SCRATCH / "vae"))
    ap.add_argument("--finetune-decoder", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=0, help="(decoder fine-tuning) stop and save after this long")
    args = ap.parse_args()
    if args.finetune_decoder:
        return finetune_decoder(args)
    setup_torch()
    log = Log("vae")
    from diffusers import AutoencoderKL
    from pathlib import Path
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "final"
    if (final / "done.json").exists():
        log("already trained; skipping")
        return

    imgs, _, _, _ = dataset.make_dataset(args.images, args.seed, style_mix=STYLE_MIX)
    data = to_tensor(imgs)
    log(f"data {tuple(data.shape)}")

    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**{**VAE_CONFIG, "block_out_channels": tuple(int(c) for c in args.channels.split(","))})
    log(f"params {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M "
        f"(decoder {sum(p.numel() for p in vae.decoder.parameters()) / 1e6:.2f}M)")
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(s, args.steps) / args.steps))))
    step = 0
    ck = out / "ckpt.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        vae.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        step = st["step"]
        log(f"resumed at step {step}")
    g = torch.Generator().manual_seed(args.seed * 1000 + step)
    vae.train()
    t0 = time.time()
    ema = None
    while step < args.steps:
        idx = torch.randint(len(data), (args.batch,), generator=g)
        x = data[idx]
        c = args.crop
        if c < dataset.SIZE:
            # crops aligned to the 8-pixel latent grid
            oy, ox = (torch.randint(0, (dataset.SIZE - c) // 8 + 1, (2,), generator=g) * 8).tolist()
            x = x[:, :, oy:oy + c, ox:ox + c]
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        rec_loss = recon_loss(rec, x, edge_weights(x, args.edge_weight))
        kl = post.kl().mean()
        loss = rec_loss + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step(); sched.step()
        step += 1
        ema = rec_loss.item() if ema is None else 0.95 * ema + 0.05 * rec_loss.item()
        if step % 25 == 0:
            log(f"step {step}/{args.steps} rec {ema:.5f} kl {kl.item():.1f} {(time.time() - t0) / 25:.2f}s/step")
            t0 = time.time()
        if step % args.ckpt_every == 0 or step == args.steps:
            save_ckpt(ck, {"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                           "rec": ema})

    # latent statistics -> scaling factor (as SD's 0.18215 = 1/std)
    vae.eval()
    with torch.no_grad():
        zs = torch.cat([vae.encode(data[i:i + 32]).latent_dist.mean for i in range(0, 512, 32)])
        rec = torch.cat([vae.decode(vae.encode(data[i:i + 32]).latent_dist.mean).sample for i in range(0, min(256, len(data)), 32)])
        full_mse = F.mse_loss(rec, data[:min(256, len(data))]).item()
    shape_acc = shape_class_accuracy(vae)
    sf = float(1.0 / zs.std())
    vae.register_to_config(scaling_factor=sf)
    vae.save_pretrained(final, safe_serialization=True)
    (final / "done.json").write_text(json.dumps({"steps": step, "rec_loss_ema": ema, "full_image_mse": full_mse,
                                                 "latent_mean": float(zs.mean()), "latent_std": float(zs.std()),
                                                 "scaling_factor": sf, "shape_class_kept": shape_acc}, indent=2))
    log(f"done: rec_ema {ema:.5f} full-image mse {full_mse:.5f} scaling_factor {sf:.4f} shape class kept {shape_acc:.0%}")


def finetune_decoder(args):
    setup_torch()
    log = Log("vae-dec")
    from diffusers import AutoencoderKL
    from pathlib import Path
    out = Path(args.out)
    final = out / "final_ft"
    if (final / "done.json").exists():
        log("already fine-tuned; skipping")
        return
    vae = AutoencoderKL.from_pretrained(out / "final")
    vae.encoder.requires_grad_(False); vae.quant_conv.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    imgs, _, _, _ = dataset.make_dataset(args.images, args.seed + 100, style_mix=STYLE_MIX)
    data = to_tensor(imgs)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(s, args.steps) / args.steps))))
    step, elapsed = 0, 0.0
    ck = out / "ckpt_dec.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        vae.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        step, elapsed = st["step"], st["elapsed"]
        log(f"resumed at step {step}")
    g = torch.Generator().manual_seed(args.seed * 1000 + 17 + step)
    vae.train(); vae.encoder.eval()
    t0 = time.time()
    ema = None
    while step < args.steps:
        idx = torch.randint(len(data), (args.batch,), generator=g)
        x = data[idx]
        c = args.crop
        oy, ox = (torch.randint(0, (dataset.SIZE - c) // 8 + 1, (2,), generator=g) * 8).tolist()
        x = x[:, :, oy:oy + c, ox:ox + c]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        loss = recon_loss(rec, x, edge_weights(x, args.edge_weight))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 25 == 0:
            log(f"step {step}/{args.steps} rec {ema:.5f}")
        run = elapsed + time.time() - t0
        stop = args.max_minutes and run > args.max_minutes * 60
        if step % args.ckpt_every == 0 or step == args.steps or stop:
            save_ckpt(ck, {"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                           "elapsed": run, "rec": ema})
        if stop:
            log(f"time limit reached at step {step}")
            break
    vae.eval()
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(data[i:i + 32]).latent_dist.mean).sample for i in range(0, min(256, len(data)), 32)])
        full_mse = F.mse_loss(rec, data[:min(256, len(data))]).item()
    shape_acc = shape_class_accuracy(vae)
    vae.save_pretrained(final, safe_serialization=True)
    (final / "done.json").write_text(json.dumps({"steps": step, "rec_loss_ema": ema, "full_image_mse": full_mse,
                                                 "shape_class_kept": shape_acc, "seconds": elapsed + time.time() - t0}, indent=2))
    log(f"done: rec_ema {ema} full-image mse {full_mse:.5f} shape class kept {shape_acc:.0%}")


if __name__ == "__main__":
    main()
