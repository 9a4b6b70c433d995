"""Time to sign a run and to verify its signature, beside today's verify, for a run with
1,000,000 file events (goal: signing, and verifying with --key, each < 1 s beyond verify).

    python bench/attest.py [--events 1000000] [--dir /var/lib/onegc-audit/bench-attest]

The run is synthetic (journals written with the project's Journal, sealed with its seal);
the timings go through the same functions as the harness and `verify --key`.
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from onegc.evidence.attest import PUBLIC_NAME, init_keys, load_signer, load_verifier
from onegc.evidence.integrity import check_signatures, verify_run
from onegc.evidence.journal import Journal, journal_path
from onegc.evidence.seal import MANIFEST_NAME, seal, sign_run


def make_run(run_dir: Path, events: int) -> None:
    (run_dir / "journal").mkdir(parents=True)
    harness = Journal(journal_path(run_dir, "harness_events"), "harness_events")
    harness.write(kind="start", detail={"run_id": "bench/t0/r1", "task": "t0", "budget_s": 2400.0,
                                        "locked": ["prepare.py"], "kernel": "bench"})
    files = Journal(journal_path(run_dir, "file_events"), "file_events", flush_every_s=1.0)
    for i in range(events):
        files.write(root="workspace", path=f"/runs/bench/workspace/out/f{i % 5000}.bin", event="close_write",
                    is_dir=False, cookie=0)
    files.close()
    harness.write(kind="end", detail={"reason": "agent_exited", "complete": True, "reasons": []})
    harness.close()
    seal(run_dir, complete=True, reasons=[])


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/var/lib/onegc-audit/bench-attest"))
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    run_dir = args.dir / "run"
    start = time.perf_counter()
    make_run(run_dir, args.events)
    print(f"built and sealed a run with {args.events:,} file events in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as keys:
        init_keys(Path(keys))
        signer, verifier = load_signer(Path(keys)), load_verifier(Path(keys) / PUBLIC_NAME)
        manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
        sign_s = best_of(lambda: sign_run(run_dir, manifest, signer))
        check_s = best_of(lambda: check_signatures(run_dir, manifest, verifier), 5)
        plain, keyed = [], []
        for _ in range(3):  # interleaved: a shared machine's noise falls on both alike
            plain.append(best_of(lambda: verify_run(run_dir), 1))
            keyed.append(best_of(lambda: verify_run(run_dir, verifier), 1))
        plain_s, keyed_s = min(plain), min(keyed)
    assert verify_run(run_dir, verifier).signature == "verified"
    print(f"sign at seal:            {sign_s:.3f} s")
    print(f"signature checks alone:  {check_s * 1000:.2f} ms  (what --key adds to verify)")
    print(f"verify (today):          {plain_s:.3f} s")
    print(f"verify --key:            {keyed_s:.3f} s  (+{keyed_s - plain_s:.3f} s, ratio {keyed_s / plain_s:.3f})")
    print(f"goal each < 1 s beyond verify: sign {'met' if sign_s < 1 else 'MISSED'}, "
          f"verify --key {'met' if check_s < 1 else 'MISSED'}")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
