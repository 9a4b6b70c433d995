"""How long `onegc-audit --help` takes, and what it imports: commands are loaded lazily (audit/cli.py's
COMMANDS table), so the top-level help must not pay for duckdb, polars or torch.

    python bench/cli_startup.py [--repeat 10]

Prints the median wall time of `--help` (target < 0.3 s) and its ratio to a bare `python -c pass`,
the floor any Python command pays.
"""

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("duckdb", "polars", "torch", "numpy")


def wall(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    floor = wall([sys.executable, "-c", "pass"], args.repeat)
    help_s = wall([sys.executable, "-m", "onegc.audit", "--help"], args.repeat)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "onegc.audit", "--help"],
                         capture_output=True, text=True, check=True)
    heavy = sorted({m for line in res.stderr.splitlines() for m in HEAVY if line.rstrip().endswith(f"| {m}")})
    print(f"python -c pass      {floor:6.3f}s")
    print(f"onegc-audit --help  {help_s:6.3f}s  ({help_s / floor:.1f}x the bare interpreter)  target < 0.3 s")
    print(f"heavy imports on --help: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
