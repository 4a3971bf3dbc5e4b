"""Drives a live `hotswap serve` (tiny fixture model, adapters `kohya` and `peft`) with the
unmodified `webuiapi` and `openai` client packages, as their users would. Run by
Scripts/client-api-tests.sh; exits non-zero on the first failed check.

Checks, per client: the image size asked for; the same seed twice gives identical PNG bytes; a
LoRA (a `<lora:NAME:W>` tag, an OpenAI `model`) changes the image and is recorded in the
infotext's `Lora hashes`; an unknown LoRA is a 404 naming it; listings; and for A1111,
/sdapi/v1/progress moves during a render and /sdapi/v1/interrupt stops one.
"""
import base64
import io
import json
import sys
import threading
import time
import urllib.request

import openai
import webuiapi
from PIL import Image

base_url = sys.argv[1].rstrip("/")
host, port = base_url.split("//")[1].split(":")
failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        failures.append(message)


def png_text(data):
    return Image.open(io.BytesIO(data)).info.get("parameters", "")


# ---- webuiapi (AUTOMATIC1111's API) ----
api = webuiapi.WebUIApi(host=host, port=int(port))
r1 = api.txt2img(prompt="a red cube", seed=42, width=64, height=64, steps=6)
check(r1.image.size == (64, 64), f"webuiapi: 64x64 image (got {r1.image.size})")
r2 = api.txt2img(prompt="a red cube", seed=42, width=64, height=64, steps=6)
check(r1.json["images"][0] == r2.json["images"][0], "webuiapi: same seed twice -> identical PNG bytes")
check(r1.info["seed"] == 42 and r1.info["all_seeds"] == [42], f"webuiapi: info seed 42 (got {r1.info.get('seed')})")

tagged = api.txt2img(prompt="a red cube <lora:kohya:1>", seed=42, width=64, height=64, steps=6)
check(tagged.json["images"][0] != r1.json["images"][0], "webuiapi: <lora:kohya:1> changes the image")
infotext = tagged.info["infotexts"][0]
check("Lora hashes" in infotext and "kohya" in infotext and infotext.startswith("a red cube <lora:kohya:1>"),
      f"webuiapi: the infotext keeps the tag and records Lora hashes ({infotext!r})")
check(png_text(base64.b64decode(tagged.json["images"][0])) == infotext, "webuiapi: the PNG carries the same infotext")
weaker = api.txt2img(prompt="a red cube <lora:kohya:0.5>", seed=42, width=64, height=64, steps=6)
check(weaker.json["images"][0] not in (tagged.json["images"][0], r1.json["images"][0]), "webuiapi: the tag's weight counts")

batch = api.txt2img(prompt="a red cube", seed=7, width=64, height=64, steps=4, batch_size=2, n_iter=2)
check(len(batch.images) == 4 and batch.info["all_seeds"] == [7, 8, 9, 10], f"webuiapi: batch 2 x 2 with seeds 7..10 ({batch.info.get('all_seeds')})")
check(len(set(batch.json["images"])) == 4, "webuiapi: the four images differ")

try:
    api.txt2img(prompt="a red cube <lora:nope:1>", width=64, height=64, steps=4)
    check(False, "webuiapi: unknown LoRA refused")
except RuntimeError as error:
    status, text = error.args
    check(status == 404 and "nope" in text, f"webuiapi: unknown LoRA is a 404 naming it ({status} {text[:120]})")
try:
    api.txt2img(prompt="x", width=64, height=64, steps=4, sampler_name="Heun")
    check(False, "webuiapi: unknown sampler refused")
except RuntimeError as error:
    status, text = error.args
    check(status == 422 and "Heun" in text, f"webuiapi: unknown sampler is a 422 naming it ({status})")

check([l["name"] for l in api.get_loras()] == ["kohya", "peft"], "webuiapi: get_loras lists both adapters")
check(len(api.get_sd_models()) == 1, "webuiapi: get_sd_models lists the base")
check("Euler a" in [s["name"] for s in api.get_samplers()], "webuiapi: get_samplers has Euler a")

# Progress moves during a render; interrupt stops it with the images finished before.
samples = []
result = {}
worker = threading.Thread(target=lambda: result.setdefault(
    "r", api.txt2img(prompt="a slow render", seed=1, width=128, height=128, steps=120, n_iter=3)))
worker.start()
deadline = time.time() + 120
while time.time() < deadline:
    p = api.get_progress()
    if p["state"]["job_count"] == 3:
        samples.append((p["progress"], p["state"]["job_no"], p["state"]["sampling_step"]))
    if p["state"]["job_no"] >= 1 and p["state"]["sampling_step"] > 0:
        break
    time.sleep(0.05)
check(len({s[2] for s in samples}) >= 3, f"webuiapi: sampling_step moves during the render ({len(samples)} samples)")
check(all(a[0] <= b[0] for a, b in zip(samples, samples[1:])) and samples and samples[-1][0] > 0.34,
      f"webuiapi: progress rises past the first image ({samples[-1] if samples else None})")
api.interrupt()
worker.join(120)
interrupted = result.get("r")
check(interrupted is not None and 1 <= len(interrupted.images) < 3 and interrupted.info.get("interrupted") is True,
      f"webuiapi: interrupt returns the finished images ({len(interrupted.images) if interrupted else None})")
check(api.get_progress()["state"]["job_count"] == 0, "webuiapi: progress is idle afterwards")

# ---- openai ----
client = openai.OpenAI(base_url=base_url + "/v1", api_key="not-needed")
models = [m.id for m in client.models.list()]
check(models[1:] == ["kohya", "peft"] and models[0] == "sd1-tiny", f"openai: models.list is the base then the adapters ({models})")
g1 = client.images.generate(prompt="a red cube", size="64x64", n=2, extra_body={"seed": 11, "steps": 6})
images = [base64.b64decode(d.b64_json) for d in g1.data]
check(len(images) == 2 and all(Image.open(io.BytesIO(i)).size == (64, 64) for i in images), "openai: n=2, 64x64")
check(images[0] != images[1], "openai: the two images (seeds 11, 12) differ")
g2 = client.images.generate(prompt="a red cube", size="64x64", n=1, extra_body={"seed": 11, "steps": 6})
check(base64.b64decode(g2.data[0].b64_json) == images[0], "openai: same seed -> identical PNG bytes")
g3 = client.images.generate(prompt="a red cube", model="peft", size="64x64", extra_body={"seed": 11, "steps": 6})
adapted = base64.b64decode(g3.data[0].b64_json)
check(adapted != images[0], "openai: model=peft changes the image")
check("peft" in png_text(adapted) and "Lora hashes" in png_text(adapted), "openai: the infotext records the adapter")
g4 = client.images.generate(prompt="a red cube", model="sd1-tiny", size="64x64", extra_body={"seed": 11, "steps": 6})
check(base64.b64decode(g4.data[0].b64_json) == images[0], "openai: model=<base> is the base image")
try:
    client.images.generate(prompt="x", model="dall-e-3", size="64x64")
    check(False, "openai: unknown model refused")
except openai.NotFoundError as error:
    check("dall-e-3" in str(error), f"openai: unknown model is NotFoundError naming it ({str(error)[:100]})")
try:
    client.images.generate(prompt="x", size="64x64", extra_body={"steps": 100000})
    check(False, "openai: too many steps refused")
except openai.BadRequestError as error:
    check("steps" in str(error), "openai: steps over the limit is BadRequestError naming steps")
u = client.images.generate(prompt="a red cube", size="64x64", response_format="url", extra_body={"seed": 11, "steps": 6})
with urllib.request.urlopen(u.data[0].url, timeout=30) as response:
    check(response.read() == images[0], "openai: response_format=url serves the same PNG")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all client checks passed")
