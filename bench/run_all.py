"""Run every benchmark in bench/ and keep each one's table.

    python bench/run_all.py [--out DIR] [--quick] [--only kmeans,quantize,...]

Each benchmark prints a markdown table and writes JSON to DIR/<name>.json; its whole output goes
to DIR/<name>.txt. A benchmark that fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# name -> (script, extra args). Ordered so that the cheap, most important tables come first.
SUITE: dict[str, tuple[str, list[str]]] = {
    "kmeans": ("bench_kmeans.py", []),
    "quantize": ("bench_quantize.py", []),
    "quality": ("bench_quality.py", []),
    "render": ("bench_render.py", []),
    "service": ("bench_service.py", []),
    "fields": ("bench_fields.py", []),
    "train": ("bench_train.py", []),
    "cluster": ("bench_cluster.py", []),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-out", help="directory for tables and JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not numbers to report")
    ap.add_argument("--only", help="comma-separated names: " + ",".join(SUITE))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(SUITE)
    failed = []
    for name in names:
        script, extra = SUITE[name]
        path = BENCH / script
        if not path.exists():
            print(f"## {name}: not present ({script})")
            continue
        cmd = [sys.executable, str(path), "--out", str(out / f"{name}.json"), *extra]
        if args.quick:
            cmd.append("--quick")
        print(f"## {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        with (out / f"{name}.txt").open("w") as log:
            try:
                proc = subprocess.run(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=args.timeout
                )
                text, rc = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                text, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
                text += f"\nnot finished: timed out after {args.timeout:.0f} s\n"
            log.write(text)
        print(text, flush=True)
        print(f"## {name}: exit {rc} in {time.time() - t0:.1f} s\n", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
