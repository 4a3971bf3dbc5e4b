#!/usr/bin/env python3
"""Affinity and failover of `Scripts/cluster` (N replicas behind nginx), measured from each
replica's /metrics and /v1/adapters. Standard library only.

    scale_out_check.py test    --model DIR --adapter-file F.safetensors [--replicas 3] [--adapters 6]
    scale_out_check.py compare --model DIR --adapter-file F.safetensors [...] [--requests 120] [--seed 1]

`test` (Scripts/scale-out-test.sh, in CI): 60 requests cycling over the adapters with ?adapter=,
all answered 200, adapter loads (cache misses) summed over the replicas <= 2 x adapters, and every
adapter loaded on exactly one replica; then one replica is killed with SIGKILL and 20 more requests
are sent: all answered, the killed replica's adapters now loaded on the others. Everything started
is stopped at the end, by PID.

`compare` (docs/SCALE-OUT.md): the same request sequence (a seeded shuffle) through nginx with
`hash $arg_adapter consistent` and with round-robin, printing loads and swaps per replica.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "Scripts", "cluster")
failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def post_image(port, adapter, steps, size):
    body = json.dumps({"prompt": "a small red circle", "steps": steps, "width": size, "height": size, "seed": 1}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/images?adapter={adapter}", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return f"{type(error).__name__}: {error}"


def metrics(port):
    """The counters of one replica's /metrics, by name with labels."""
    values = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
    return values


def loads(port):
    """Adapter files this replica read from disk (the affinity measure: with the hash each adapter
    is loaded once in the pool)."""
    return metrics(port).get("hotswap_adapter_loads_total", 0)


def swaps(port):
    return metrics(port).get("hotswap_adapter_swaps_total", 0)


def served(port):
    return metrics(port).get('hotswap_requests_total{outcome="ok"}', 0)


def cached(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/adapters", timeout=10) as response:
        return {a["name"] for a in json.load(response)["adapters"] if a["cached"]}


def request_json(port, method, path, body=None, raw=False):
    """(status, JSON answer or headers): the JSON body for GETs, the headers for POSTs."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            content = response.read()
            if method == "POST":
                return response.status, dict(response.headers)
            return response.status, (content if raw else json.loads(content))
    except urllib.error.HTTPError as error:
        return error.code, {}
    except OSError as error:
        return f"{type(error).__name__}: {error}", {}


def adapter_status(port, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/adapters/{name}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def cluster(*args):
    subprocess.run([sys.executable, CLUSTER, *args], check=True)


def start(args, run_dir, adapters_dir, balance):
    cluster("up", str(args.replicas), "--model", args.model, "--adapters-dir", adapters_dir, "--port", str(args.port),
            "--run-dir", run_dir, "--balance", balance, "--",
            "--log-level", "warning", "--max-steps", "50", "--warmup-steps", "1")
    with open(os.path.join(run_dir, "cluster.json")) as f:
        return json.load(f)


def make_adapters(args, directory):
    names = [f"style{i}" for i in range(args.adapters)]
    for name in names:
        shutil.copyfile(args.adapter_file, os.path.join(directory, name + ".safetensors"))
    return names


def test(args, work):
    adapters_dir = os.path.join(work, "adapters")
    os.makedirs(adapters_dir)
    names = make_adapters(args, adapters_dir)
    run_dir = os.path.join(work, "run")
    state = start(args, run_dir, adapters_dir, "hash")
    replicas = state["replicas"]
    all_pids = [p["pid"] for p in replicas] + [state["nginx"]["pid"]]
    try:
        statuses = [post_image(args.port, names[i % len(names)], args.steps, args.size) for i in range(60)]
        check(all(s == 200 for s in statuses), f"60 requests through nginx all answered 200 ({sorted(set(map(str, statuses)))})")
        per_replica = {r["name"]: (loads(r["port"]), swaps(r["port"]), served(r["port"]), cached(r["port"])) for r in replicas}
        for name, (l, s, n, c) in per_replica.items():
            print(f"     {name}: {int(n)} requests, {int(l)} adapter loads, {int(s)} swaps, holds {sorted(c)}")
        total_loads = sum(v[0] for v in per_replica.values())
        check(total_loads <= 2 * len(names), f"adapter loads over the pool {int(total_loads)} <= 2 x {len(names)} adapters")
        check(sum(v[2] for v in per_replica.values()) == 60, "the replicas answered 60 requests in all")
        owners = {n: [r for r, v in per_replica.items() if n in v[3]] for n in names}
        check(all(len(o) == 1 for o in owners.values()), f"each adapter is loaded on exactly one replica ({owners})")

        # Clients that only take a base URL: /adapter/NAME/... routes like ?adapter=NAME.
        owner = next(r for r in replicas if names[0] in per_replica[r["name"]][3])
        before = served(owner["port"])
        status, _ = request_json(args.port, "POST", f"/adapter/{names[0]}/sdapi/v1/txt2img",
                                 {"prompt": "a circle", "steps": args.steps, "width": args.size, "height": args.size})
        check(status == 200 and served(owner["port"]) == before + 1,
              f"POST /adapter/{names[0]}/sdapi/v1/txt2img reached {owner['name']}, which holds {names[0]} ({status})")
        # Asynchronous jobs, with and without an adapter: their Location routes the polling back.
        for query in (f"?async=true&adapter={names[1]}", "?async=true"):
            status, headers = request_json(args.port, "POST", "/v1/images" + query,
                                           {"prompt": "a circle", "steps": args.steps, "width": args.size, "height": args.size})
            location = headers.get("Location", "")
            state = None
            for _ in range(200):
                _, body = request_json(args.port, "GET", location)
                state = body.get("state") if isinstance(body, dict) else None
                if state in ("done", "failed"):
                    break
                time.sleep(0.05)
            image_url = body.get("image_url", "") if isinstance(body, dict) else ""
            image_status, _ = request_json(args.port, "GET", image_url, raw=True)
            check(status == 202 and state == "done" and image_status == 200,
                  f"async job ({query}) polled through nginx at {location}: {state}, image {image_status}")

        # One adapters folder: an upload through nginx is served by every replica, a delete is seen by all.
        with open(args.adapter_file, "rb") as f:
            upload = urllib.request.Request(f"http://127.0.0.1:{args.port}/v1/adapters/fresh", data=f.read(), method="PUT")
        try:
            with urllib.request.urlopen(upload, timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = f"{error.code} {error.read()[:300]!r}"
        check(status in (200, 201), f"PUT /v1/adapters/fresh through nginx: {status}")
        check(all(adapter_status(r["port"], "fresh") == 200 for r in replicas), "every replica lists the uploaded adapter")
        check(post_image(args.port, "fresh", args.steps, args.size) == 200, "the uploaded adapter renders through nginx")
        delete = urllib.request.Request(f"http://127.0.0.1:{args.port}/v1/adapters/fresh", method="DELETE")
        try:
            with urllib.request.urlopen(delete, timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = f"{error.code} {error.read()[:300]!r}"
        check(status == 204, f"DELETE through nginx: {status}")
        check(all(adapter_status(r["port"], "fresh") == 404 for r in replicas), "no replica lists it after the delete")
        check(post_image(args.port, "fresh", args.steps, args.size) == 404, "and rendering with it is a 404")

        # Failover: SIGKILL the replica serving the most adapters; its adapters move to the others.
        victim = max(replicas, key=lambda r: len(per_replica[r["name"]][3]))
        moved = sorted(per_replica[victim["name"]][3])
        os.kill(victim["pid"], signal.SIGKILL)
        survivors = [r for r in replicas if r is not victim]
        before = sum(served(r["port"]) for r in survivors)
        statuses = [post_image(args.port, names[i % len(names)], args.steps, args.size) for i in range(20)]
        check(all(s == 200 for s in statuses), f"after SIGKILL of {victim['name']}: 20 more requests all answered 200 ({sorted(set(map(str, statuses)))})")
        check(sum(served(r["port"]) for r in survivors) - before == 20, "the surviving replicas answered those 20")
        now_cached = set().union(*(cached(r["port"]) for r in survivors))
        check(set(moved) <= now_cached, f"{victim['name']}'s adapters {moved} are now served by the others")
        report = subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "timing-report"), "--json",
                                 *[r["db"] for r in replicas]], capture_output=True, text=True)
        merged = json.loads(report.stdout)
        # 60 + the A1111 render + 2 async jobs + the uploaded adapter's render + 20.
        check(report.returncode == 0 and sum(v["ok"] for v in merged["per_replica"].values()) == 84,
              "timing-report merges the replicas' databases (84 ok rows, one table per replica)")
    finally:
        cluster("down", "--run-dir", run_dir)
    time.sleep(0.2)
    left = []
    for pid in all_pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "State:\tZ" not in f.read():
                    left.append(pid)
        except OSError:
            pass
    check(not left, f"cluster down stopped every process it started ({left or 'none left'})")


def compare(args, work):
    adapters_dir = os.path.join(work, "adapters")
    os.makedirs(adapters_dir)
    names = make_adapters(args, adapters_dir)
    rng = random.Random(args.seed)
    sequence = [rng.choice(names) for _ in range(args.requests)]
    results = {}
    for balance in ("hash", "round-robin"):
        run_dir = os.path.join(work, f"run-{balance}")
        state = start(args, run_dir, adapters_dir, balance)
        try:
            started = time.time()
            statuses = [post_image(args.port, name, args.steps, args.size) for name in sequence]
            elapsed = time.time() - started
            rows = {r["name"]: (int(loads(r["port"])), int(swaps(r["port"])), int(served(r["port"])), sorted(cached(r["port"])))
                    for r in state["replicas"]}
            report = subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "timing-report"), "--json",
                                     *[r["db"] for r in state["replicas"]]], capture_output=True, text=True, check=True)
            share = json.loads(report.stdout)["overall"]["swap_share"]
        finally:
            cluster("down", "--run-dir", run_dir)
        results[balance] = (rows, statuses, elapsed, share)
    print(f"\n{args.requests} requests, seeded shuffle (seed {args.seed}) over {len(names)} adapters, "
          f"{args.replicas} replicas, model {os.path.relpath(args.model, ROOT)}, {args.steps} steps, {args.size}x{args.size}")
    print("| balance | adapter loads (cache misses) | swaps (active set changed) | adapters held per replica | all 200 | wall s | swap share of request time |")
    print("|---|---|---|---|---|---|---|")
    for balance, (rows, statuses, elapsed, share) in results.items():
        loads_total = sum(v[0] for v in rows.values())
        swaps_total = sum(v[1] for v in rows.values())
        held = " / ".join(str(len(v[3])) for v in rows.values())
        print(f"| {balance} | {loads_total} | {swaps_total} | {held} | {all(s == 200 for s in statuses)} | "
              f"{elapsed:.1f} | {'-' if share is None else f'{share * 100:.1f}%'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["test", "compare"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter-file", required=True, help="copied under --adapters names into a shared folder")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--adapters", type=int, default=6)
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--port", type=int, default=0, help="nginx's port (0: a free one; replicas use the next N)")
    args = parser.parse_args()
    args.model = os.path.abspath(args.model)
    if args.port == 0:
        args.port = free_port_block(args.replicas + 1)
    work = tempfile.mkdtemp(prefix="hotswap-scale-out-")
    try:
        (test if args.mode == "test" else compare)(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)


def free_port_block(count):
    """A port P with P..P+count-1 free on loopback."""
    import socket
    for _ in range(50):
        base = random.randint(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise SystemExit("no free block of ports")


if __name__ == "__main__":
    main()
