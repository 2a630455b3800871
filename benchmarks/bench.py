"""The speed benchmark: `python benchmarks/bench.py [OPTIONS]` is `xentcheck bench --out benchmarks [OPTIONS]`.

It writes benchmarks/RESULTS.md, benchmarks/results.json and benchmarks/bench.png; the method, the
tables and the JSON keys are described in xentcheck/bench/__init__.py and `xentcheck bench --help`.
"""
import sys
from pathlib import Path

from xentcheck.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--out", str(Path(__file__).resolve().parent), *sys.argv[1:]]))
