"""Compress many scenes through a vqpress server: submit them all, detach, collect later.

    python examples/pipeline.py submit  --server HOST:PORT --out results/ scenes/*.ply
    python examples/pipeline.py collect --server HOST:PORT --out results/
    python examples/pipeline.py run     --server HOST:PORT --out results/ scenes/*.ply   # both

`submit` uploads each scene (content the server already holds is not sent again), starts one
quantize job per scene and writes their ids to results/jobs.json, then returns: the jobs run on the
server whether or not this process stays. `collect` (now, in an hour, after a server restart, from
another machine) waits for every job in jobs.json and downloads each result to
results/<scene>.vqp with its report beside it. It can be run again: what was downloaded is kept.

Exit status: 0 when every scene is compressed, 6 when a job failed or was cancelled (see
jobs.json for the reason), 5 when the server could not be reached (run `collect` again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import vqpress

MANIFEST = "jobs.json"


def submit(client: vqpress.Client, scenes: list[Path], out: Path, config: vqpress.QuantizeConfig) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for scene in scenes:
        if scene.stem in manifest:
            continue  # submitted by an earlier run
        job = client.quantize(scene, config, evaluate=False)
        manifest[scene.stem] = {"scene": str(scene), "job": job.id, "state": "QUEUED"}
        _write(manifest_path, manifest)  # after each one: a crash loses no job id
        print(f"{scene.name}: job {job.id}", file=sys.stderr)
    return manifest


def collect(client: vqpress.Client, out: Path) -> int:
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    status = 0
    for stem, entry in manifest.items():
        target = out / f"{stem}.vqp"
        if entry["state"] == "SUCCEEDED" and target.exists():
            continue
        job = client.job(entry["job"])
        try:
            st = job.wait(unavailable_timeout=600)  # re-attaches across server restarts
        except vqpress.JobFailed as e:
            entry.update(state="FAILED", error=e.message)
            status = 6
        except vqpress.JobCancelled as e:
            entry.update(state="CANCELLED", error=e.message)
            status = 6
        else:
            by_kind = {r.kind: r for r in st.results}
            client.download(by_kind["vqp"], target)
            client.download(by_kind["json"], out / f"{stem}.report.json")
            entry.update(state="SUCCEEDED", bytes=target.stat().st_size, ratio=st.metrics.get("ratio"))
            print(f"{stem}: {target} ({entry['bytes']} bytes, ratio {entry['ratio']:.1f})", file=sys.stderr)
        _write(manifest_path, manifest)
    return status


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("submit", "collect", "run"))
    p.add_argument("scenes", nargs="*", type=Path)
    p.add_argument("--server", default=os.environ.get("VQPRESS_SERVER", "localhost:50051"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", default="default", choices=("default", "high_ratio", "high_quality"))
    p.add_argument("--kmeans-iters", type=int, help="fewer Lloyd iterations: faster, a little worse")
    args = p.parse_intermixed_args(argv)
    if args.action in ("submit", "run") and not args.scenes:
        p.error("submit and run need scene files")
    config = vqpress.QuantizeConfig(preset=args.preset, kmeans_iters=args.kmeans_iters)
    try:
        # The token comes from the environment: on the command line, ps would show it.
        with vqpress.Client(args.server, token=os.environ.get("VQPRESS_TOKEN")) as client:
            if args.action in ("submit", "run"):
                submit(client, args.scenes, args.out, config)
            if args.action in ("collect", "run"):
                return collect(client, args.out)
    except vqpress.VqpressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 5 if e.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
