"""Shared configs and helpers for the hotswap-shapes training scripts."""
import json
import os
import sys
import time
from pathlib import Path

import torch

TRAIN_DIR = Path(__file__).resolve().parent
SCRIPTS = TRAIN_DIR.parent
REPO = SCRIPTS.parent
for p in (str(TRAIN_DIR), str(SCRIPTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 32, 64, 64), layers_per_block=1,
    act_fn="silu", latent_channels=4, norm_num_groups=4, sample_size=128, scaling_factor=1.0,
)

TEXT_CONFIG = dict(
    vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=64,
    bos_token_id=0, eos_token_id=2, pad_token_id=1, attention_dropout=0.0, dropout=0.0,
    initializer_factor=1.0, initializer_range=0.02,
)

UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 96, 96), layers_per_block=1, downsample_padding=1, mid_block_scale_factor=1.0,
    act_fn="silu", norm_num_groups=8, norm_eps=1e-5, cross_attention_dim=64, attention_head_dim=2,
)

# SD's noise schedule (epsilon prediction, scaled_linear betas).
SCHEDULER_CONFIG = {
    "_class_name": "DPMSolverMultistepScheduler",
    "_diffusers_version": "0.42.1",
    "algorithm_type": "dpmsolver++",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "final_sigmas_type": "zero",
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "solver_order": 2,
    "solver_type": "midpoint",
    "steps_offset": 1,
    "thresholding": False,
    "timestep_spacing": "trailing",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

SCRATCH = Path(os.environ.get("HOTSWAP_TRAIN_SCRATCH", "/work/train-scratch"))


def fast_attention(unet=None, te=None):
    """Plain bmm attention (same math as SDPA): faster than CPU flash attention for these tiny heads."""
    from diffusers.models.attention_processor import AttnProcessor
    if unet is not None:
        unet.set_attn_processor(AttnProcessor())
    if te is not None:
        te.config._attn_implementation = "eager"


def setup_torch(threads: int = 1):
    torch.set_num_threads(int(os.environ.get("HOTSWAP_TRAIN_THREADS", threads)))
    try:
        os.nice(0)
    except OSError:
        pass


class Log:
    def __init__(self, name):
        self.name = name
        self.t0 = time.time()

    def __call__(self, msg):
        print(f"[{self.name} {time.time() - self.t0:7.1f}s] {msg}", flush=True)


def save_ckpt(path: Path, obj: dict):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
