#!/usr/bin/env python3
"""Cold start and size of every function binary, under the Lambda Runtime API protocol.

For each binary in api/ (listed by `cloudagent routes`): the stripped release size, and over N runs the time from
spawning the process to the Runtime API receiving the answer to its first event (an API Gateway HTTP API v2 event
for the function's route). The function runs against DynamoDB Local with its DynamoDB client constructed and its
warm-up read done during init, as in production. Results go to stdout as a Markdown table.

Usage: benches/coldstart.py [--runs 21] [--profile release|bench] [--skip-build] [--bin NAME ...] [--baseline DIR]   (run from anywhere; needs infra/node_modules: npm ci)
"""
import argparse
import http.server
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/lambda/apigw-http-v2.json"


class RuntimeApi(http.server.ThreadingHTTPServer):
    """Plays Lambda's Runtime API for one event: hands it out once, records when the response arrives."""

    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = json.dumps(event).encode()
        self.handed_out = threading.Event()
        self.answered = threading.Event()
        self.answered_at = None
        self.status = None


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        if self.server.handed_out.is_set():
            self.server.answered.wait(30)  # a second /next: park until the run is over
            time.sleep(30)
            return
        self.server.handed_out.set()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.event)))
        self.end_headers()
        self.wfile.write(self.server.event)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if "/response" in self.path:
            self.server.answered_at = time.perf_counter()
            try:
                self.server.status = json.loads(body).get("statusCode")
            except ValueError:
                self.server.status = None
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        if "/response" in self.path or "/error" in self.path:
            self.server.answered.set()


def event_for(method, path):
    event = json.loads(FIXTURE.read_text())
    path = "/".join("p-1" if part.startswith("{") else part for part in path.split("/"))
    event["rawPath"] = path
    event["routeKey"] = f"{method} {path}"
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["routeKey"] = event["routeKey"]
    return event


def one_run(binary, method, path, endpoint, table):
    api = RuntimeApi(event_for(method, path))
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": binary.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
        "CLOUD_AGENT_STORE": "dynamodb",
        "DYNAMODB_ENDPOINT": endpoint,
        "TABLE_NAME": table,
        "RUST_LOG": "error",
    }
    started = time.perf_counter()
    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not api.answered.wait(30):
            raise RuntimeError(f"{binary.name}: no answer within 30 s")
        # The first answer after init is what is timed: a 4xx (no credential, no body) has been through the whole
        # stack as much as a 200; a 5xx or no status means the function did not work.
        if not isinstance(api.status, int) or api.status >= 500:
            raise RuntimeError(f"{binary.name}: first answer was {api.status}")
        return (api.answered_at - started) * 1000.0
    finally:
        proc.kill()
        proc.wait()
        api.shutdown()
        api.server_close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--profile", choices=["release", "bench"], default="release")
    parser.add_argument("--bin", action="append", help="only these functions (default: all)")
    parser.add_argument("--baseline", type=pathlib.Path,
                        help="a directory with other builds of the same functions (e.g. an older commit's "
                             "target/release): each run of ours alternates with one of its, and the table compares")
    args = parser.parse_args()
    if not args.skip_build:
        # Two builds, as deployed: the functions without the `cli` feature (which would unify the embedded store
        # into them), then the CLI that lists the routes.
        subprocess.run(["cargo", "build", "--profile", args.profile, "--bins", "--locked"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--profile", args.profile, "--features", "cli", "--bin", "cloudagent",
                        "--locked"], cwd=ROOT, check=True)
    release = ROOT / "target/release"
    routes = [json.loads(line) for line in subprocess.run(
        [str(release / "cloudagent"), "routes"], check=True, capture_output=True, text=True).stdout.splitlines()]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    endpoint = subprocess.run([str(ROOT / "infra/dynamodb-local/start.sh"), str(port)],
                              check=True, capture_output=True, text=True).stdout.strip()
    try:
        table = "bench"
        subprocess.run([str(release / "cloudagent"), "table", "create", "--table", table, "--endpoint", endpoint],
                       check=True, capture_output=True, env={**os.environ, "RUST_LOG": "error"})
        if args.baseline:
            print(f"| function | route | baseline: median of {args.runs} | this build: median of {args.runs} | ratio |")
            print("|---|---|---|---|---|")
        else:
            print(f"| function | route | stripped size | cold start to first answer (median of {args.runs}) | p90 |")
            print("|---|---|---|---|---|")
        for route in routes:
            if args.bin and route["binary"] not in args.bin:
                continue
            binary = release / route["binary"]
            method = route["methods"][0]
            if args.baseline:
                other = args.baseline / route["binary"]
                if not other.exists():
                    continue
                ours, theirs = [], []
                for _ in range(args.runs):  # alternating, so drift on the machine hits both alike
                    theirs.append(one_run(other, method, route["path"], endpoint, table))
                    ours.append(one_run(binary, method, route["path"], endpoint, table))
                b, a = statistics.median(theirs), statistics.median(ours)
                print(f"| {route['binary']} | {method} {route['path']} | {b:.1f} ms | {a:.1f} ms | {a / b:.2f} |")
                sys.stdout.flush()
                continue
            times = sorted(one_run(binary, method, route["path"], endpoint, table) for _ in range(args.runs))
            p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
            size = binary.stat().st_size / (1024 * 1024)
            print(f"| {route['binary']} | {method} {route['path']} | {size:.1f} MiB | {statistics.median(times):.1f} ms "
                  f"| {p90:.1f} ms |")
            sys.stdout.flush()
    finally:
        subprocess.run([str(ROOT / "infra/dynamodb-local/stop.sh")], check=False)


if __name__ == "__main__":
    main()
