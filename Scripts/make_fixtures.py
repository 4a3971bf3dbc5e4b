#!/usr/bin/env python3
"""Regenerates Tests/Fixtures: the reference data the Swift tests compare against.

Every generator is a module Scripts/fixtures/<name>.py exposing `main(fixtures_dir: Path)`; this script
imports whichever of them exist and runs them (all, or those named with --only), in this order:
safetensors, tokenizer, schedulers, models, then any other module alphabetically.

Setup (once; CPU-only torch is enough, no GPU and no model download needed):
    python3 -m venv venv
    venv/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu -r Scripts/requirements.txt
Run from anywhere:
    venv/bin/python Scripts/make_fixtures.py                    # everything
    venv/bin/python Scripts/make_fixtures.py --only models      # just Tests/Fixtures/models + reference
    venv/bin/python Scripts/make_fixtures.py --list             # what exists

Generators are seeded and deterministic: rerunning them with the versions in Scripts/requirements.txt
rewrites byte-identical files, so `git status` after a run shows only intended changes.
"""
import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
ORDER = ["safetensors", "tokenizer", "schedulers", "models"]


def available() -> list:
    names = sorted(p.stem for p in (SCRIPTS / "fixtures").glob("*.py") if not p.stem.startswith("_"))
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated generator names (e.g. models,schedulers)")
    parser.add_argument("--list", action="store_true", help="list the generators and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "Tests" / "Fixtures",
                        help="fixtures directory (default: Tests/Fixtures)")
    args = parser.parse_args()

    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        missing = [n for n in wanted if n not in names]
        if missing:
            print(f"unknown generator(s): {', '.join(missing)}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]

    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    try:
        import torch
        torch.set_num_threads(1)  # shared CPUs; also keeps reductions in one fixed order
    except ImportError:
        pass

    failed = []
    for name in names:
        start = time.time()
        print(f"== fixtures.{name}", flush=True)
        try:
            importlib.import_module(f"fixtures.{name}").main(args.out)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"== fixtures.{name}: done in {time.time() - start:.1f}s", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
