#!/usr/bin/env python3
"""Deployed size of every function binary: arm64, built the way SAM builds it (cargo-lambda, release profile),
zipped the way SAM zips it (Python's zipfile, deflate). Output: a Markdown table on stdout, with the heavy crates
each binary carries: a stripped binary still holds the source paths of its crates' panic locations, so a crate
that left any code in the binary shows up by name.

Needs cargo-lambda (`pip install cargo-lambda`: a prebuilt binary with zig) and the arm64 std
(`rustup target add aarch64-unknown-linux-gnu`). All functions build in one cargo invocation; each still gets
its own fat-LTO link, so this takes a while (about a minute per function on 2 cores).

Usage: benches/function_sizes.py [--skip-build] [--bin NAME ...]
"""
import argparse
import io
import pathlib
import re
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def functions():
    """The function binaries: every [[bin]] whose path is under api/."""
    text = (ROOT / "Cargo.toml").read_text()
    return [name for name, path in re.findall(r'\[\[bin\]\]\nname = "([^"]+)"\npath = "([^"]+)"', text)
            if path.startswith("api/")]


def zipped(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, path.read_bytes())
    return len(buffer.getvalue())


# The crates a request function should not need: the JSON Schema validator (and its regex engines), the outbound
# HTTP client, the image decoders, the SQS client.
HEAVY = ["jsonschema", "fancy-regex", "reqwest", "image", "aws-sdk-sqs"]


def heavy_crates(path):
    data = path.read_bytes()
    found = set(m.decode() for m in re.findall(rb"/([a-z][a-z0-9_-]*?)-\d+\.\d+\.\d+[^/]*/src/", data))
    return [name for name in HEAVY if name in found]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--bin", action="append", help="only these functions (default: all)")
    args = parser.parse_args()
    names = [n for n in functions() if not args.bin or n in args.bin]
    if not args.skip_build:
        command = ["cargo", "lambda", "build", "--release", "--arm64", "--locked"]
        for name in names:
            command += ["--bin", name]
        subprocess.run(command, cwd=ROOT, check=True)
    print("| function | bootstrap (arm64, stripped) | zipped | heavy crates linked |")
    print("|---|---|---|---|")
    for name in names:
        bootstrap = ROOT / "target/lambda" / name / "bootstrap"
        if not bootstrap.exists():
            sys.exit(f"{bootstrap} is missing: build first")
        size = bootstrap.stat().st_size
        heavy = ", ".join(heavy_crates(bootstrap)) or "none"
        print(f"| {name} | {size / 2**20:.2f} MiB | {zipped(bootstrap) / 2**20:.2f} MiB | {heavy} |")


if __name__ == "__main__":
    main()
