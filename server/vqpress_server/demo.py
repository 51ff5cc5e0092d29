"""`make demo`: the main job on the embedded default, end to end, as a user's pipeline would run it.

1. start `vqpress-server serve` (SQLite job table + one local worker, nothing else) on a free port;
2. through the client SDK: upload the bundled real scene, quantize it with the default
   Compact3D codebooks, follow the job's progress, download the .vqp and its report;
3. render the original and the compressed scene through the Render RPC at orbit cameras and
   write them side by side to a PNG;
4. print the report and stop the server.

    python -m vqpress_server.demo [--scene FILE] [--out DIR] [--preset P] [--views N] [--size PX]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import vqpress
from vqpress import digests

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SCENE = REPO / "tests" / "data" / "donut.ply"  # 45,624 Gaussians of a real trained scene (MIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "vqpress_server.cli", "serve", "--data-dir", str(data_dir),
           "--port", str(port), "--workers", "1"]  # fmt: skip
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    with vqpress.Client(address, timeout=5) as client:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}; see {log_path}")
            try:
                if client.health() == "SERVING":
                    return proc, address
            except vqpress.VqpressError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"server did not become healthy in 120 s; see {log_path}")
            time.sleep(0.2)


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _orbit(scene: Path, n: int, size: int) -> list[vqpress.Camera]:
    """Orbit cameras around the scene, computed in this (client) process from the scene file."""
    from .core.render.cameras import orbit_cameras
    from .core.splats.formats import load_scene

    splats, _ = load_scene(scene)
    cams = orbit_cameras(splats, n=n, width=size, height=size)
    return [vqpress.Camera(c.viewmat, c.K, c.width, c.height, name=f"orbit_{i}") for i, c in enumerate(cams)]


def _progress_line(status: vqpress.JobStatus, t0: float) -> None:
    width = 30
    filled = int(round(width * status.progress))
    msg = f"[{'#' * filled}{'-' * (width - filled)}] {100 * status.progress:5.1f}%  {status.stage:<20} "
    msg += f"{time.monotonic() - t0:6.1f}s"
    if sys.stderr.isatty():
        sys.stderr.write("\r" + msg)
    else:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE, help="scene to compress (.ply/.splat/.spz)")
    ap.add_argument("--out", type=Path, default=REPO / "demo-out", help="output directory")
    ap.add_argument("--preset", default="default", help="default | high_ratio | high_quality")
    ap.add_argument("--views", type=int, default=4, help="orbit cameras for quality and the picture")
    ap.add_argument("--size", type=int, default=320, help="image width and height (pixels)")
    args = ap.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cameras = _orbit(args.scene, args.views, args.size)
    white = (1.0, 1.0, 1.0)

    print(f"starting vqpress-server (data in {out / 'data'}) ...", file=sys.stderr)
    proc, address = _start_server(out / "data", out / "server.log")
    try:
        with vqpress.Client(address) as client:
            print(f"server at {address}: {client.health()}", file=sys.stderr)
            ref = client.upload(args.scene)
            print(f"uploaded {args.scene.name}: {ref.size:,} bytes, artifact {digests.short(ref.id)}", file=sys.stderr)

            job = client.quantize(ref, vqpress.QuantizeConfig(preset=args.preset), cameras=cameras, background=white)
            t0 = time.monotonic()
            for status in job.watch():
                _progress_line(status, t0)
            sys.stderr.write("\n")
            final = job.wait()
            paths = job.download_results(out)
            vqp_path = next(p for p in paths if p.suffix == ".vqp")
            report = json.loads(next(p for p in paths if p.suffix == ".json").read_text())

            vqp_ref = next(r for r in final.results if r.name.endswith(".vqp"))
            original = client.render(ref, cameras, background=white)
            compressed = client.render(vqpress.ArtifactRef(vqp_ref.id), cameras, background=white)
    finally:
        _stop_server(proc)

    from .core.render.images import save_grid

    picture = out / (args.scene.stem + ".png")
    save_grid(original + compressed, picture, cols=len(cameras))

    print(f"{args.scene} -> {vqp_path}")
    print(f"  Gaussians        {report['num_gaussians']:,} (SH degree {report['sh_degree']})")
    print(f"  input            {report['input_bytes']:,} bytes")
    print(f"  .vqp             {report['output_bytes']:,} bytes")
    bpg = report["bits_per_gaussian"]
    print(f"  ratio            {report['ratio']:.2f}x on disk, {bpg['total']:.1f} bits/Gaussian")
    for name, nbytes in report["section_bytes"].items():
        print(f"    {name:<16} {nbytes:>10,} bytes  {bpg[name]:6.2f} bits/G")
    if report.get("psnr") is not None:
        print(f"  quality          PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f} "
              f"vs the original at {report['num_cameras']} cameras ({report['cameras_source']})")  # fmt: skip
    print(f"  repaired         {sum(report['repaired'].values())} values")
    print("  time             " + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings_s"].items()))
    print(f"  picture          {picture} (top: original, bottom: compressed)")
    print(f"  report           {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
