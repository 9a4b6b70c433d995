"""Train the T6 DLinear baseline on the real ETTh1 (CPU) and print the official test MSE.

Why: the paper's baseline (0.384) is the yardstick every agent score is compared against,
so our train.py + locked evaluation must reproduce it (target <= 0.40) end to end: real
data preparation, a workspace as the harness builds it, training as a subprocess, and the
isolated official evaluation through the registry.

Usage: python bench/t6_baseline.py [--work DIR]   (needs shared/data/t6/ETTh1.csv)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onegc.tasks import registry

TARGET_MSE = 0.40


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, help="keep data and workspace here (default: temp)")
    args = ap.parse_args()
    if registry.offline_source("t6") is None:
        print("error: no offline ETTh1.csv (set ONEGC_SHARED_DATA)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="onegc-bench-t6-") as tmp:
        work = args.work or Path(tmp)
        t0 = time.monotonic()
        prepared = registry.prepare_data("t6", work / "data", synthetic=False)
        ws = work / "workspace"
        registry.populate_workspace(registry.get_task("t6"), ws, prepared)
        t1 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in ("ONEGC_SMOKE",)}
        subprocess.run([sys.executable, "train.py"], cwd=ws, env=env, check=True)
        t2 = time.monotonic()
        ckpt = max((ws / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
        result = registry.evaluate("t6", ckpt, ws, prepared.data_dir)
        t3 = time.monotonic()
    if "error" in result:
        print(f"error: evaluation failed: {result}", file=sys.stderr)
        return 1
    mse = float(result["value"])
    print("---")
    print(f"test_mse:         {mse:.6f}   (paper baseline 0.384, target <= {TARGET_MSE})")
    print(f"isolation:        {result['isolation']}")
    print(f"prepare_seconds:  {t1 - t0:.1f}")
    print(f"train_seconds:    {t2 - t1:.1f}")
    print(f"eval_seconds:     {t3 - t2:.1f}")
    print(f"total_seconds:    {t3 - t0:.1f}")
    return 0 if mse <= TARGET_MSE else 1


if __name__ == "__main__":
    sys.exit(main())
