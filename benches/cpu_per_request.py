#!/usr/bin/env python3
"""Server CPU time per request, per route: (user + system CPU of the server process) / requests served.

CPU time per request is what Vercel bills (active CPU) and is stable on a noisy machine where requests per second
are not. Each route is measured beside a bare axum route answering the same body (examples/bare_axum.rs): the
floor, measured in the same run. Also reported: the median latency wrk saw, and bytes the server logged per
request (CloudWatch bills log bytes).

Routes: `/health/live` (no perimeter), `/api/v1/agent/me` (an agent's bearer JWT: the perimeter's rate limit, no
audit write under the standard policy) and `GET /v3/tasks` with an operator's API key (rate limit and a stored
audit record). The server gets quotas far above what wrk sends (`--quota`), so every request is served (a 429
would end the run) and the rate limit is paid as production pays it: from leased blocks.

Load comes from wrk (Debian `wrk`) over loopback: -t1 -c8 for --seconds, after a 1 s warm-up, median of --runs.
The server's embedded store lives in a tmpfs (`/dev/shm`) by default, where a commit's fsync costs nothing: on
this VM's disk an fsync'd commit varies by a factor of 1.5 from run to run and buried differences in our own code
(task creation is four commits). `--disk` puts it on disk, as `cloudagent serve` runs by default.

Both servers are built with the same profile: `release` (what is deployed: fat LTO, one codegen unit) by default,
or `bench` (opt-level 3 without whole-program LTO, quicker to build).

Usage: benches/cpu_per_request.py [--runs 3] [--seconds 5] [--profile release|bench] [--skip-build] [--target-dir DIR] [--disk]
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wait_for(url, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"no answer from {url}")


def wrk(url, seconds, headers, script=None):
    args = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"{url} answered {non2xx.group(1)} errors under load:\n{out}")
    value, unit = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    median_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return requests, median_ms


def measure(pid, url, seconds, runs, headers=(), log=None, script=None):
    wrk(url, 1, headers, script)  # warm-up: connections, caches, lazy statics
    per_request, log_bytes, latencies = [], [], []
    for _ in range(runs):
        before, size_before = cpu_seconds(pid), (log.stat().st_size if log else 0)
        served, median_ms = wrk(url, seconds, headers, script)
        time.sleep(0.2)  # let the server finish writing the last log lines
        cpu = cpu_seconds(pid) - before
        per_request.append(cpu / served * 1e6)
        latencies.append(median_ms)
        if log:
            log_bytes.append((log.stat().st_size - size_before) / served)
    return (statistics.median(per_request), (statistics.median(log_bytes) if log_bytes else None),
            statistics.median(latencies))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--profile", choices=["release", "bench"], default="release")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--target-dir", default=str(ROOT / "target"), help="where cargo builds (CARGO_TARGET_DIR)")
    parser.add_argument("--rust-log", default="info", help="the server's RUST_LOG (warn: no access log lines)")
    parser.add_argument("--quota", default="100000000/60",
                        help="the agents' and the operator key's quota: far above what wrk sends")
    parser.add_argument("--disk", action="store_true",
                        help="keep the server's store on disk (fsync'd commits) instead of in /dev/shm")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("needs wrk: apt-get install wrk")
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--profile", args.profile, "--features", "cli", "--bin", "cloudagent",
                        "--example", "bare_axum", "--target-dir", args.target_dir],
                       cwd=ROOT, check=True)
    # Cargo writes both built-in profiles, `release` and `bench`, to <target>/release.
    target = pathlib.Path(args.target_dir) / "release"
    shm = pathlib.Path("/dev/shm")
    work = pathlib.Path(tempfile.mkdtemp(dir=None if args.disk or not shm.is_dir() else shm))
    bare_port, our_port = free_port(), free_port()
    env = {**os.environ, "PORT": str(bare_port), "RUST_LOG": "info"}
    bare = subprocess.Popen([target / "examples" / "bare_axum"], env=env)
    log = work / "serve.log"
    admin = "bench-admin-key-0123456789abcdef0123"
    env = {**os.environ, "RUST_LOG": args.rust_log, "LOG_FORMAT": "json", "CLOUD_AGENT_EMF": "off",
           "DEV_AGENT_SECRET": "bench-agent-pepper-0123456789abcdef", "DEV_JWT_SECRET": "bench-jwt-0123456789abcdef0123",
           "DEV_ADMIN_KEY": admin, "CLOUD_AGENT_RATE_AGENT": args.quota,
           "CLOUD_AGENT_RATE_TIERS": f"standard:{args.quota}:{args.quota}"}
    ours = subprocess.Popen([target / "cloudagent", "serve", "--port", str(our_port), "--data-dir", str(work / "data")],
                            env=env, stderr=log.open("wb"))
    try:
        wait_for(f"http://127.0.0.1:{bare_port}/health/live")
        wait_for(f"http://127.0.0.1:{our_port}/health/live")
        secret = re.search(r"--secret (\S+)", log.read_text()).group(1)  # printed by serve, whatever RUST_LOG
        request = urllib.request.Request(
            f"http://127.0.0.1:{our_port}/api/v1/agent/token",
            data=json.dumps({"agent_id": "demo-agent", "agent_secret": secret}).encode(),
            headers={"content-type": "application/json"})
        token = json.load(urllib.request.urlopen(request))["access_token"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{our_port}/api/v1/keys",
            data=json.dumps({"name": "bench", "role": "operator"}).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {admin}"})
        key = json.load(urllib.request.urlopen(request))["key"]
        create = work / "create.lua"
        create.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          'wrk.body = \'{"type": "echo", "payload": {"message": "bench"}}\'\n')
        floor, _, floor_ms = measure(bare.pid, f"http://127.0.0.1:{bare_port}/health/live", args.seconds, args.runs)
        rows = [("bare axum route (floor)", "GET /health/live", floor, None, floor_ms)]
        for route, path, headers, script in [
            ("GET /health/live", "/health/live", [], None),
            ("GET /api/v1/agent/me (agent JWT)", "/api/v1/agent/me", [f"Authorization: Bearer {token}"], None),
            ("GET /v3/tasks (operator API key)", "/v3/tasks", [f"X-API-Key: {key}"], None),
            ("POST /v3/tasks (echo, runs in the request)", "/v3/tasks", [f"X-API-Key: {key}"], create),
        ]:
            cpu, logged, ms = measure(ours.pid, f"http://127.0.0.1:{our_port}{path}", args.seconds, args.runs,
                                      headers=headers, log=log, script=script)
            rows.append(("cloudagent serve", route, cpu, logged, ms))
        print(f"| server | route | CPU µs/request (median of {args.runs}) | × floor | median latency ms "
              "| log bytes/request |")
        print("|---|---|---|---|---|---|")
        for server, route, cpu, bytes_, ms in rows:
            logged = "—" if bytes_ is None else f"{bytes_:.0f}"
            print(f"| {server} | `{route}` | {cpu:.1f} | {cpu / floor:.2f} | {ms:.2f} | {logged} |")
    finally:
        for p in (bare, ours):
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
