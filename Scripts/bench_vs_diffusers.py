#!/usr/bin/env python3
"""Times the same Stable Diffusion workloads in diffusers (PyTorch, float32, CPU) and, optionally, in
Hotswap, and prints both with the ratio hotswap/diffusers.

Usage:
  python Scripts/bench_vs_diffusers.py --model DIR [--rows ROWS] [--runs N] [--warmup N] [--threads T]
                                       [--hotswap PATH_TO_BINARY] [--no-diffusers] [--json]

DIR is a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline folder, e.g. one from
Scripts/make_random_sd.py (--variant sdxl for the SDXL shapes). SDXL rows: the UNet gets
added_cond_kwargs (pooled text embeds and six time ids), `text` runs both encoders as encode_prompt
does (output_hidden_states), e2e uses StableDiffusionXLPipeline.
ROWS (comma-separated; default unet512b1,unet512b2,unet256b1,unet256b2,vae512,text,load,e2e512):
  unet<S>b<B>, unet<W>x<H>b<B>  one UNet forward: sample [B,4,H/8,W/8], timestep 500,
                                encoder_hidden_states [B,77,cross_attention_dim] (768 for SD1.5)
  vae<S>, vae<W>x<H>            VAE decode of a latent [1,4,H/8,W/8] to a WxH image
  text, textb<B>                text encoder forward on B (default 2) prompts of 77 tokens
  e2e<S>, e2e<W>x<H>[s<N>]      end to end: one image, prompt E2E_PROMPT, 20 (or N) steps euler-a (Euler ancestral),
                                guidance 7 (CFG batch 2), seed 1: text encoder + denoising loop + VAE decode,
                                model loading excluded. diffusers: pipe(...) with EulerAncestralDiscreteScheduler
                                after one untimed 1-step call; hotswap: one `BIN render` process (cold: its first
                                step includes page-faulting the weights), timed by its own text + denoise +
                                decode + png figures; peak RSS of that process reported as hotswap_peak_rss_gb
                                (and diffusers' whole benchmark process's peak as diffusers_process_peak_rss_gb)
  load                          StableDiffusionPipeline.from_pretrained(DIR, torch_dtype=float32),
                                page cache warm (the warm-up load reads the files first)
  swap                          LoRA swap cycle with the --adapter files (give two; not in the default rows):
                                diffusers: load_lora_weights(file) + fuse_lora(), then unfuse_lora() +
                                unload_lora_weights(), alternating files; one cycle timed per run.
                                hotswap: `BIN bench swap --model DIR --adapter A --adapter B --rounds N`;
                                its hit_ms (cache hit: unload + apply) is the compared figure, cold_ms
                                (file read + parse + apply) is kept alongside.

diffusers side: torch.set_num_threads(T) (default 2), torch.inference_mode(), WARMUP untimed runs
(default 1), then RUNS timed runs (default 3); reports median and min wall-clock seconds.

OpenVINO side (with --openvino f32[,bf16]; unet, vae and text rows): diffusers' modules converted once with
openvino.convert_model and kept under --openvino-cache, then per row reshaped to static shapes and compiled
with {"INFERENCE_PRECISION_HINT": P, "INFERENCE_NUM_THREADS": T}; timed like the diffusers side, right
after it in the same process; the JSON records the precision the plugin actually chose.

Hotswap side (with --hotswap BIN), one process per row, run after the diffusers row:
  BIN bench unet --model DIR --width W --height H --batch B --runs N
  BIN bench vae  --model DIR --width W --height H --runs N
  BIN bench text --model DIR --batch B --runs N
  BIN bench load --model DIR --runs N
each printing (as its last JSON line on stdout) one JSON object with at least "seconds_median" and
"seconds_min"; the whole object is kept in --json output. OMP/OpenBLAS/VECLIB thread variables are
set to T for it unless already set. A failing or missing Hotswap row is reported, not fatal.
"""
import argparse
import warnings
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_ROWS = "unet512b1,unet512b2,unet256b1,unet256b2,vae512,text,load,e2e512"
E2E_PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"
TEXT_PROMPTS = ["a photograph of an astronaut riding a horse on the moon, highly detailed", ""]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_row(row: str) -> dict:
    m = re.fullmatch(r"unet(\d+)(?:x(\d+))?b(\d+)", row)
    if m:
        w = int(m.group(1))
        h = int(m.group(2) or w)
        return {"row": row, "kind": "unet", "width": w, "height": h, "batch": int(m.group(3))}
    m = re.fullmatch(r"vae(\d+)(?:x(\d+))?", row)
    if m:
        w = int(m.group(1))
        return {"row": row, "kind": "vae", "width": w, "height": int(m.group(2) or w), "batch": 1}
    m = re.fullmatch(r"text(?:b(\d+))?", row)
    if m:
        return {"row": row, "kind": "text", "batch": int(m.group(1) or 2)}
    m = re.fullmatch(r"e2e(\d+)(?:x(\d+))?(?:s(\d+))?", row)
    if m:
        w = int(m.group(1))
        return {"row": row, "kind": "e2e", "width": w, "height": int(m.group(2) or w), "steps": int(m.group(3) or 20),
                "guidance": 7.0}
    if row == "load":
        return {"row": row, "kind": "load"}
    if row == "swap":
        return {"row": row, "kind": "swap"}
    raise SystemExit(f"unknown row {row!r} (expected unet<S>b<B>, unet<W>x<H>b<B>, vae<S>, vae<W>x<H>, text, textb<B>, load, e2e<S>, e2e<W>x<H>[s<N>])")


def describe(spec: dict, cross_dim) -> str:
    k = spec["kind"]
    if k == "unet":
        b, h, w = spec["batch"], spec["height"] // 8, spec["width"] // 8
        return f"UNet [{b},4,{h},{w}] ctx [{b},77,{cross_dim or '?'}]"
    if k == "vae":
        return f"VAE decode [1,4,{spec['height'] // 8},{spec['width'] // 8}] -> {spec['width']}x{spec['height']}"
    if k == "text":
        return f"text encoder [{spec['batch']},77]"
    if k == "e2e":
        return f"end to end {spec['width']}x{spec['height']}, {spec['steps']} steps euler-a, guidance {spec['guidance']:g}"
    if k == "swap":
        return "LoRA swap cycle (diffusers load+fuse+unfuse+unload; hotswap cache hit)"
    return "pipeline from_pretrained"


def hotswap_argv(binary: str, model: Path, spec: dict, runs: int, adapters=()) -> list:
    k = spec["kind"]
    argv = [binary, "bench", k, "--model", str(model)]
    if k == "swap":
        for a in adapters:
            argv += ["--adapter", str(a)]
        return argv + ["--rounds", str(max(runs, 5))]
    if k in ("unet", "vae"):
        argv += ["--width", str(spec["width"]), "--height", str(spec["height"])]
    if k in ("unet", "text"):
        argv += ["--batch", str(spec["batch"])]
    return argv + ["--runs", str(runs)]


def run_measured(argv_in, threads: int, timeout: float):
    """Runs one hotswap process, argv = argv_in(a temporary folder it may write to), with the thread
    variables set to T unless already set, under /usr/bin/time for its peak RSS (this process's own
    rusage of its children would count the child's copy-on-write image of this multi-GB, torch-holding
    process before the exec). Returns (returncode, stdout, stderr, wall seconds, peak RSS in kB or
    None), or an error string."""
    import tempfile
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env.setdefault(var, str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "rss")
        wrapper = ["/usr/bin/time", "-f", "%M", "-o", rss_file] if os.path.exists("/usr/bin/time") else []
        argv = argv_in(tmp)
        log("  hotswap: " + " ".join(argv))
        start = time.perf_counter()
        try:
            proc = subprocess.run(wrapper + argv, capture_output=True, text=True, env=env, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{type(e).__name__}: {e}"
        wall = time.perf_counter() - start
        try:
            peak_kb = int(Path(rss_file).read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            peak_kb = None
    return proc.returncode, proc.stdout, proc.stderr, wall, peak_kb


def run_hotswap(argv: list, threads: int, timeout: float) -> dict:
    run = run_measured(lambda _: argv, threads, timeout)
    if isinstance(run, str):
        return {"error": run}
    returncode, stdout, stderr, _, peak_kb = run
    result = None
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if result is not None and "hit_ms" in result:  # bench swap: milliseconds of a cache-hit swap
        result.setdefault("seconds_median", result["hit_ms"] / 1000)
        result.setdefault("seconds_min", result.get("hit_ms_min", result["hit_ms"]) / 1000)
    if returncode != 0 or result is None or "seconds_median" not in result or "seconds_min" not in result:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return {"error": f"exit {returncode}, no JSON with seconds_median/seconds_min; " + " | ".join(tail)}
    if peak_kb:
        result["hotswap_peak_rss_gb"] = peak_kb / 2**20
    return result


def run_hotswap_render(binary: str, model: Path, spec: dict, threads: int, timeout: float) -> dict:
    """One `hotswap render` process: seconds = its text + denoise + decode + png figures; peak RSS."""
    run = run_measured(lambda tmp: [
        binary, "render", "--model", str(model), "--prompt", E2E_PROMPT, "--steps", str(spec["steps"]),
        "--guidance", str(spec["guidance"]), "--scheduler", "euler-a", "--seed", "1", "--width", str(spec["width"]),
        "--height", str(spec["height"]), "--out", os.path.join(tmp, "e2e.png")], threads, timeout)
    if isinstance(run, str):
        return {"error": run}
    returncode, out, err, wall, peak_kb = run
    text = out + err
    parts = {name: float(v) for name, v in re.findall(r"(text|denoise|decode|png) (\d+(?:\.\d+)?) ms", text)}
    if returncode != 0 or len(parts) != 4:
        return {"error": f"exit {returncode}; " + " | ".join(text.strip().splitlines()[-3:])}
    seconds = sum(parts.values()) / 1000
    return {"seconds_median": seconds, "seconds_min": seconds, "process_wall_seconds": wall,
            "phases_ms": parts, "hotswap_peak_rss_gb": peak_kb / 2**20 if peak_kb else None}


def timed(fn, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"seconds_median": statistics.median(times), "seconds_min": min(times), "seconds_all": times}


class Diffusers:
    def __init__(self, model: Path):
        self.model = model
        self.pipe = None

    def load(self):
        import torch
        from diffusers import DiffusionPipeline
        return DiffusionPipeline.from_pretrained(self.model, torch_dtype=torch.float32)

    def pipeline(self):
        if self.pipe is None:
            log(f"  loading {self.model}")
            self.pipe = self.load()
        return self.pipe

    def release(self):
        """Frees the pipeline's weights (and hands the freed heap back to the OS) before a hotswap row."""
        self.pipe = None
        gc.collect()
        try:
            import ctypes
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def cross_dim(self):
        try:
            return json.loads((self.model / "unet" / "config.json").read_text())["cross_attention_dim"]
        except (OSError, KeyError, ValueError):
            return None

    def swap(self, adapters: list, runs: int, warmup: int) -> dict:
        """One cycle: load_lora_weights(file) + fuse_lora(), then unfuse_lora() + unload_lora_weights()."""
        pipe = self.pipeline()
        files = [Path(a) for a in adapters] or []
        if not files:
            raise SystemExit("the swap row needs --adapter FILE (twice)")
        state = {"i": 0, "in": [], "out": []}

        def cycle():
            f = files[state["i"] % len(files)]
            state["i"] += 1
            t0 = time.perf_counter()
            pipe.load_lora_weights(str(f.parent), weight_name=f.name, adapter_name="bench")
            pipe.fuse_lora(adapter_names=["bench"], lora_scale=1.0)
            t1 = time.perf_counter()
            pipe.unfuse_lora()
            pipe.unload_lora_weights()
            t2 = time.perf_counter()
            state["in"].append(t1 - t0)
            state["out"].append(t2 - t1)
        result = timed(cycle, runs, warmup)
        timed_in, timed_out = state["in"][warmup:], state["out"][warmup:]
        result["load_fuse_median"] = statistics.median(timed_in)
        result["unfuse_unload_median"] = statistics.median(timed_out)
        return result

    def bench(self, spec: dict, runs: int, warmup: int) -> dict:
        import torch
        k = spec["kind"]
        if k == "load":
            had = self.pipe is not None
            self.pipe = None
            gc.collect()

            def load_once():
                p = self.load()
                del p
                gc.collect()
            result = timed(load_once, runs, max(warmup, 1))
            if had:
                self.pipe = None  # reloaded lazily by the next row
            return result

        pipe = self.pipeline()
        g = torch.Generator("cpu").manual_seed(0)
        with torch.inference_mode():
            if k == "unet":
                b, h, w = spec["batch"], spec["height"] // 8, spec["width"] // 8
                sample = torch.randn(b, pipe.unet.config.in_channels, h, w, generator=g)
                ctx = torch.randn(b, 77, pipe.unet.config.cross_attention_dim, generator=g)
                t = torch.tensor(500.0)
                added = None
                if pipe.unet.config.addition_embed_type == "text_time":  # SDXL micro-conditioning
                    ids = [spec["height"], spec["width"], 0, 0, spec["height"], spec["width"]]
                    added = {"text_embeds": torch.randn(b, pipe.text_encoder_2.config.projection_dim, generator=g),
                             "time_ids": torch.tensor([ids] * b, dtype=torch.float32)}
                return timed(lambda: pipe.unet(sample, t, encoder_hidden_states=ctx, added_cond_kwargs=added,
                                               return_dict=False), runs, warmup)
            if k == "vae":
                latents = torch.randn(1, pipe.vae.config.latent_channels, spec["height"] // 8, spec["width"] // 8,
                                      generator=g)
                sf = pipe.vae.config.scaling_factor
                return timed(lambda: pipe.vae.decode(latents / sf, return_dict=False), runs, warmup)
            if k == "e2e":
                from diffusers import EulerAncestralDiscreteScheduler
                import resource
                pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
                pipe.set_progress_bar_config(disable=True)

                def render(steps):
                    return pipe(E2E_PROMPT, height=spec["height"], width=spec["width"], num_inference_steps=steps,
                                guidance_scale=spec["guidance"], generator=torch.Generator("cpu").manual_seed(1))
                render(1)  # untimed warm-up
                result = timed(lambda: render(spec["steps"]), 1, 0)
                result["diffusers_process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                return result
            if k == "text":
                prompts = (TEXT_PROMPTS * spec["batch"])[: spec["batch"]]
                ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                     truncation=True, return_tensors="pt").input_ids
                if getattr(pipe, "text_encoder_2", None) is not None:
                    ids2 = pipe.tokenizer_2(prompts, padding="max_length", max_length=pipe.tokenizer_2.model_max_length,
                                            truncation=True, return_tensors="pt").input_ids
                    return timed(lambda: (pipe.text_encoder(ids, output_hidden_states=True),
                                          pipe.text_encoder_2(ids2, output_hidden_states=True)), runs, warmup)
                return timed(lambda: pipe.text_encoder(ids), runs, warmup)
        raise AssertionError(k)


def peak_rss_gb() -> float:
    """This (diffusers) process's peak RSS so far; monotone over the rows."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class OpenVINO:
    """The OpenVINO runtime, the fastest CPU peer: diffusers' own modules converted with
    openvino.convert_model (the converter optimum-cli export openvino calls), saved once under CACHE,
    then per row read, reshaped to the row's static shapes (OpenVINO's best case) and compiled for the
    CPU with INFERENCE_PRECISION_HINT = f32 or bf16 and INFERENCE_NUM_THREADS = threads."""

    def __init__(self, diffusers: "Diffusers", cache: Path, threads: int):
        import openvino as ov
        self.ov, self.core, self.diffusers, self.cache, self.threads = ov, ov.Core(), diffusers, cache, threads
        cache.mkdir(parents=True, exist_ok=True)

    def model(self, component: str):
        """The component's OpenVINO IR: converted from diffusers' module on first use, then read from CACHE."""
        import torch
        xml = self.cache / f"{component}.xml"
        if not xml.exists():
            log(f"  openvino: converting {component} -> {xml}")
            pipe = self.diffusers.pipeline()
            g = torch.Generator("cpu").manual_seed(0)

            class Wrap(torch.nn.Module):
                def __init__(self, fn):
                    super().__init__()
                    self.fn = fn

                def forward(self, *args):
                    return self.fn(*args)
            if component == "unet":
                unet = pipe.unet
                example = (torch.randn(1, unet.config.in_channels, 32, 32, generator=g), torch.tensor(500.0),
                           torch.randn(1, 77, unet.config.cross_attention_dim, generator=g))
                module = Wrap(lambda x, t, c: unet(x, t, encoder_hidden_states=c, return_dict=False)[0])
                module.unet = unet
            elif component == "vae_decoder":
                vae = pipe.vae
                example = (torch.randn(1, vae.config.latent_channels, 32, 32, generator=g),)
                module = Wrap(lambda z: vae.decode(z, return_dict=False)[0])
                module.vae = vae
            else:
                te = pipe.text_encoder
                example = (torch.ones(2, 77, dtype=torch.int64),)
                module = Wrap(lambda ids: te(ids, return_dict=False)[0])
                module.te = te
            with torch.no_grad():
                converted = self.ov.convert_model(module, example_input=example)
            self.ov.save_model(converted, str(xml), compress_to_fp16=False)
            del converted
            gc.collect()
        return self.core.read_model(str(xml))

    def bench(self, spec: dict, runs: int, warmup: int, precision: str) -> dict:
        import numpy as np
        k = spec["kind"]
        rng = np.random.default_rng(0)

        def config(component):
            return json.loads((self.diffusers.model / component / "config.json").read_text())
        if k == "unet":
            model = self.model("unet")
            b, h, w = spec["batch"], spec["height"] // 8, spec["width"] // 8
            unet = config("unet")
            shapes = [[b, unet["in_channels"], h, w], [], [b, 77, unet["cross_attention_dim"]]]
            inputs = [rng.standard_normal(shapes[0], dtype=np.float32), np.array(500.0, dtype=np.float32),
                      rng.standard_normal(shapes[2], dtype=np.float32)]
        elif k == "vae":
            model = self.model("vae_decoder")
            shapes = [[1, config("vae")["latent_channels"], spec["height"] // 8, spec["width"] // 8]]
            inputs = [rng.standard_normal(shapes[0], dtype=np.float32)]
        elif k == "text":
            model = self.model("text_encoder")
            shapes = [[spec["batch"], 77]]
            inputs = [np.ones(shapes[0], dtype=np.int64)]
        else:
            return {"error": f"no OpenVINO row for {k}"}
        model.reshape({port: self.ov.PartialShape(shape) for port, shape in zip(model.inputs, shapes)})
        compiled = self.core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                          "INFERENCE_NUM_THREADS": self.threads})
        request = compiled.create_infer_request()
        result = timed(lambda: request.infer(inputs), runs, warmup)
        result["inference_precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        del request, compiled
        gc.collect()
        return result


def fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="diffusers StableDiffusionPipeline folder")
    parser.add_argument("--rows", default=DEFAULT_ROWS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hotswap", help="path to the hotswap binary (runs `hotswap bench ...`)")
    parser.add_argument("--hotswap-timeout", type=float, default=3600, help="seconds per hotswap row")
    parser.add_argument("--no-diffusers", action="store_true", help="only run the hotswap side")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--adapter", action="append", default=[], help="LoRA file for the swap row (repeat: two)")
    parser.add_argument("--openvino", default="",
                        help="comma-separated OpenVINO precisions to time too, e.g. f32,bf16 (unet, vae and text rows; "
                             "needs `pip install openvino`)")
    parser.add_argument("--openvino-cache", type=Path, default=None,
                        help="where the converted OpenVINO IR is kept (default /tmp/hotswap-openvino/<model folder name>)")
    parser.add_argument("--release-diffusers", action="store_true",
                        help="drop diffusers' pipeline before each hotswap row (reloaded for the next diffusers row), "
                             "so only one copy of the weights is resident: on by default for SDXL folders, whose F32 "
                             "weights (~14 GB) fit 24 GB once, not twice")
    args = parser.parse_args()

    if not (args.model / "model_index.json").exists():
        raise SystemExit(f"{args.model}: no model_index.json")
    if args.runs < 1:
        raise SystemExit("--runs must be >= 1")
    if args.no_diffusers and not args.hotswap:
        raise SystemExit("--no-diffusers needs --hotswap")
    specs = [parse_row(r.strip()) for r in args.rows.split(",") if r.strip()]
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch_dtype= deprecation notice

    info = {"model": str(args.model), "threads": args.threads, "runs": args.runs, "warmup": args.warmup}
    bench = None
    if not args.no_diffusers:
        import torch
        import diffusers
        from diffusers.utils import logging as dlogging
        torch.set_num_threads(args.threads)
        dlogging.set_verbosity_error()
        dlogging.disable_progress_bar()
        try:
            import transformers
            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except Exception:
            pass
        info.update(torch=torch.__version__, diffusers=diffusers.__version__)
        bench = Diffusers(args.model)
    if args.hotswap:
        info["hotswap"] = args.hotswap

    precisions = [p.strip() for p in args.openvino.split(",") if p.strip()]
    openvino = None
    if precisions:
        if bench is None:
            raise SystemExit("--openvino needs the diffusers side (it converts diffusers' modules)")
        import openvino as ov
        info["openvino"] = ov.get_version()
        openvino = OpenVINO(bench, args.openvino_cache or Path("/tmp/hotswap-openvino") / args.model.resolve().name,
                            args.threads)
    cross_dim = Diffusers(args.model).cross_dim()
    release = args.release_diffusers or (args.model / "text_encoder_2" / "config.json").exists()
    results = []
    for spec in specs:
        row = {"row": spec["row"], "description": describe(spec, cross_dim),
               **{k: v for k, v in spec.items() if k not in ("row",)}}
        log(f"{spec['row']}: {row['description']}")
        if bench is not None:
            row["diffusers"] = (bench.swap(args.adapter, args.runs, args.warmup) if spec["kind"] == "swap"
                                else bench.bench(spec, args.runs, args.warmup))
            log(f"  diffusers: median {row['diffusers']['seconds_median']:.3f}s min {row['diffusers']['seconds_min']:.3f}s")
        for precision in precisions if spec["kind"] in ("unet", "vae", "text") else []:
            try:
                result = openvino.bench(spec, args.runs, args.warmup, precision)
            except Exception as e:  # reported in the row, like a failing hotswap row
                result = {"error": f"{type(e).__name__}: {e}"}
            row[f"openvino_{precision}"] = result
            log(f"  openvino {precision}: " + (result["error"] if "error" in result else
                f"median {result['seconds_median']:.3f}s min {result['seconds_min']:.3f}s ({result['inference_precision']})"))
        if bench is not None:
            row["diffusers"]["diffusers_process_peak_rss_gb"] = peak_rss_gb()
        if args.hotswap and bench is not None and release:
            bench.release()
        if args.hotswap:
            if spec["kind"] == "e2e":
                row["hotswap"] = run_hotswap_render(args.hotswap, args.model, spec, args.threads, args.hotswap_timeout)
            else:
                row["hotswap"] = run_hotswap(hotswap_argv(args.hotswap, args.model, spec, args.runs, args.adapter),
                                             args.threads, args.hotswap_timeout)
            if "error" in row["hotswap"]:
                log(f"  hotswap: {row['hotswap']['error']}")
            else:
                log(f"  hotswap: median {row['hotswap']['seconds_median']:.3f}s min {row['hotswap']['seconds_min']:.3f}s")
        d, h = row.get("diffusers"), row.get("hotswap")
        if d and h and "error" not in h:
            row["ratio_median"] = h["seconds_median"] / d["seconds_median"]
            row["ratio_min"] = h["seconds_min"] / d["seconds_min"]
        for precision in precisions:
            o = row.get(f"openvino_{precision}")
            if o and "error" not in o and h and "error" not in h:
                row[f"ratio_vs_openvino_{precision}"] = h["seconds_median"] / o["seconds_median"]
        results.append(row)

    if args.json:
        print(json.dumps({**info, "rows": results}, indent=1))
        return 0

    header = ["row", "workload", "diffusers med", "diffusers min", "hotswap med", "hotswap min", "ratio med", "ratio min"]
    header += [f"openvino {p} med" for p in precisions] + [f"hotswap/openvino {p}" for p in precisions]
    table = []
    for r in results:
        d, h = r.get("diffusers") or {}, r.get("hotswap") or {}
        table.append([r["row"], r["description"], fmt(d.get("seconds_median")), fmt(d.get("seconds_min")),
                      "error" if "error" in h else fmt(h.get("seconds_median")), fmt(h.get("seconds_min")),
                      fmt(r.get("ratio_median")), fmt(r.get("ratio_min"))]
                     + [fmt((r.get(f"openvino_{p}") or {}).get("seconds_median")) for p in precisions]
                     + [fmt(r.get(f"ratio_vs_openvino_{p}")) for p in precisions])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    print(f"model {args.model}, {args.threads} threads, {args.runs} timed run(s) after {args.warmup} warm-up; "
          "seconds; ratio = hotswap / diffusers (< 1: hotswap faster)"
          + (f"; OpenVINO {info['openvino']}" if precisions else ""))
    for i, line in enumerate([header] + table):
        print("  ".join(str(x).ljust(w) if j < 2 else str(x).rjust(w) for j, (x, w) in enumerate(zip(line, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        for side in ("diffusers", "hotswap"):
            for key in ("hotswap_peak_rss_gb", "diffusers_process_peak_rss_gb"):  # peak RSS, GiB
                if (r.get(side) or {}).get(key) is not None:
                    print(f"{r['row']}: {key} {r[side][key]:.2f}")
        if "error" in (r.get("hotswap") or {}):
            print(f"{r['row']}: hotswap error: {r['hotswap']['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
