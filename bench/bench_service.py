"""Service benchmark over loopback, each figure beside its baseline measured in the same run:
artifact upload/download through vqpress against a raw grpcio stream of the same chunks (same
chunk size, same channel and server options, same loopback), Render RPC time per image against an
in-process render of the same scene and camera, and small quantize jobs per second.

    python bench/bench_service.py [--size MiB] [--repeats R] [--renders N] [--scene PLY]
                                  [--render-size PX] [--jobs M] [--out JSON] [--quick]

Goals: upload and download >= 0.9x the raw stream; Render overhead <= 10 ms per image (median of
the per-pair differences RPC minus in-process, the two timed back to back). Transfers are
interleaved (raw, ours, raw, ours, ...), each digest function (BLAKE3, the default, and sha256)
through a client that names uploads by it, and each figure is the median of ``--repeats``; CPU seconds
(user + sys of this process: client and server both run here) are printed beside the wall times.
An upload is stored durably (written, fsynced, renamed) and the raw stream writes nothing, so the
bench also times writing and fsyncing the same chunks into the server's data directory, interleaved
with the rest: no upload can beat that disk, and each upload's ratio to min(raw stream, disk) is
printed beside the goal's ratio to the raw stream.
Prints a markdown table; --out also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut_small.ply"
RATIO_GOAL = 0.9  # ours / raw, for upload and download
OVERHEAD_GOAL_MS = 10.0  # Render RPC minus in-process render, per image


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    c0, t0 = _cpu_s(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu_s() - c0


def _default_scene() -> tuple[Path, Path | None]:
    """The trained lego scene and its cameras when the shared data is present, else the small donut."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import shared_data_dir

    d = shared_data_dir()
    if d is not None and (d / "trained_lego_sh3" / "lego_7k.ply").exists():
        return d / "trained_lego_sh3" / "lego_7k.ply", d / "trained_lego_sh3" / "cameras.json"
    return DONUT, None


class RawStream:
    """The baseline: a bare grpcio server and channel moving the same chunks, no protobuf, no hashing,
    no disk: stream-unary up (the server counts the bytes), unary-stream down (from memory)."""

    def __init__(self, chunks: list[bytes]) -> None:
        import grpc
        from vqpress._transport import CHANNEL_OPTIONS
        from vqpress_server.rpc.server import SERVER_OPTIONS

        self.chunks = chunks

        def up(it: Iterator[bytes], ctx: object) -> bytes:
            return sum(len(c) for c in it).to_bytes(8, "little")

        def down(req: bytes, ctx: object) -> Iterator[bytes]:
            yield from self.chunks

        handler = grpc.method_handlers_generic_handler(
            "bench.Raw",
            {"Up": grpc.stream_unary_rpc_method_handler(up), "Down": grpc.unary_stream_rpc_method_handler(down)},
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[handler], options=SERVER_OPTIONS)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        self._up = self.channel.stream_unary("/bench.Raw/Up")
        self._down = self.channel.unary_stream("/bench.Raw/Down")

    def upload(self) -> None:
        n = int.from_bytes(self._up(iter(self.chunks)), "little")
        assert n == sum(len(c) for c in self.chunks), n

    def download(self) -> None:
        n = sum(len(c) for c in self._down(b""))
        assert n == sum(len(c) for c in self.chunks), n

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)


def write_durably(chunks: list[bytes], path: Path) -> None:
    """What storing an upload costs the disk at least: the chunks written, fsynced, then removed."""
    with open(path, "wb") as f:
        for c in chunks:
            f.write(c)
        os.fsync(f.fileno())
    path.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="artifact size for upload/download (MiB)")
    ap.add_argument("--repeats", type=int, default=5, help="transfers of each kind, raw and ours interleaved")
    ap.add_argument("--renders", type=int, default=20, help="renders per median")
    ap.add_argument("--render-size", type=int, help="square camera of this many pixels (default: the scene's)")
    ap.add_argument("--jobs", type=int, default=10, help="small quantize jobs to push through the queue")
    ap.add_argument("--scene", type=Path, help="scene to render (default: trained lego if present, else donut)")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not numbers to report")
    args = ap.parse_args()
    if args.quick:
        args.size, args.repeats = min(args.size, 32), min(args.repeats, 2)
        args.renders, args.jobs = min(args.renders, 3), min(args.jobs, 3)

    import numpy as np
    import torch
    import vqpress
    from vqpress import digests
    from vqpress._transport import CHUNK_BYTES
    from vqpress_server.app import build_app
    from vqpress_server.core.render.cameras import Camera as CoreCamera
    from vqpress_server.core.render.cameras import orbit_cameras, read_cameras_json
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import read_splats
    from vqpress_server.settings import Settings

    scene_path, cams_path = (args.scene, None) if args.scene else _default_scene()
    results: dict[str, object] = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpus": os.cpu_count(),
        "scene": scene_path.name,
        "size_mib": args.size,
        "chunk_bytes": CHUNK_BYTES,
        "repeats": args.repeats,
        "renders": args.renders,
        "jobs": args.jobs,
    }
    with tempfile.TemporaryDirectory(prefix="vqpress-bench-") as tmp_s:
        tmp = Path(tmp_s)
        app = build_app(Settings(data_dir=tmp / "data", port=0, workers=args.workers))
        app.start()
        app.workers.wait_ready(120)
        try:
            with vqpress.Client(f"127.0.0.1:{app.port}", timeout=600) as client:
                # -- artifact throughput: raw grpcio and vqpress, interleaved -----------
                data = os.urandom(args.size << 20)
                blob = tmp / "blob.npy"
                blob.write_bytes(data)
                chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
                raw = RawStream(chunks)
                del data
                probe = tmp / "data" / "disk-probe"
                # Each digest function through a client that names uploads by it: BLAKE3 (the
                # default) and sha256 (the ids before it), interleaved with the raw stream.
                kinds = ("up", "up_last", "up_known", "down")
                times: dict[str, list[tuple[float, float]]] = {"raw_up": [], "raw_down": [], "disk": []}
                times.update({f"{k}_{f}": [] for k in kinds for f in digests.FUNCTIONS})
                clients = {f: vqpress.Client(f"127.0.0.1:{app.port}", timeout=600, digest_function=f)
                           for f in digests.FUNCTIONS}  # fmt: skip
                ids = {f: digests.id_of_file(blob, f) for f in digests.FUNCTIONS}
                try:
                    for _ in range(args.repeats):
                        times["raw_up"].append(_timed(raw.upload))
                        times["raw_down"].append(_timed(raw.download))
                        times["disk"].append(_timed(lambda: write_durably(chunks, probe)))
                        for f, c in clients.items():
                            aid = ids[f]

                            def upload_fresh(c: vqpress.Client = c, aid: str = aid) -> None:
                                # the server has not got these bytes: hash, then stream
                                assert c.upload(blob).id == aid

                            times[f"up_{f}"].append(_timed(upload_fresh))
                            c.delete(aid)
                            times[f"up_last_{f}"].append(_timed(lambda c=c: c.upload(blob, hash_first=False)))
                            c.delete(aid)
                            times[f"up_known_{f}"].append(_timed(lambda c=c, aid=aid: c.upload(blob, digest=aid)))
                            times[f"down_{f}"].append(_timed(lambda c=c, aid=aid: c.download(aid, tmp / "back.npy")))
                            (tmp / "back.npy").unlink()
                            c.delete(aid)
                finally:
                    raw.close()
                    for c in clients.values():
                        c.close()
                blob.unlink()
                for key, ts in times.items():
                    wall = statistics.median(t for t, _ in ts)
                    results[f"{key}_mib_s"] = args.size / wall
                    results[f"{key}_cpu_s"] = statistics.median(c for _, c in ts)
                for f in digests.FUNCTIONS:
                    for k in kinds:
                        base = "raw_down" if k == "down" else "raw_up"
                        results[f"{k}_{f}_ratio"] = results[f"{k}_{f}_mib_s"] / results[f"{base}_mib_s"]  # type: ignore[operator]
                        if k != "down":
                            bound = min(results["raw_up_mib_s"], results["disk_mib_s"])  # type: ignore[type-var]
                            results[f"{k}_{f}_of_bound"] = results[f"{k}_{f}_mib_s"] / bound  # type: ignore[operator]

                # -- Render RPC vs an in-process render of the same camera --------------
                splats = read_splats(scene_path)
                if cams_path is not None and args.render_size is None:
                    core_cam = read_cameras_json(cams_path, split="test").cameras[0]
                    bg = (1.0, 1.0, 1.0)
                else:
                    px = args.render_size or 400
                    core_cam = orbit_cameras(splats, n=1, width=px, height=px)[0]
                    bg = (0.0, 0.0, 0.0)
                cam = vqpress.Camera(core_cam.viewmat, core_cam.K, core_cam.width, core_cam.height, core_cam.name)
                if torch.cuda.is_available():
                    splats = splats.to("cuda")

                def direct() -> None:
                    img = render(splats, CoreCamera(cam.viewmat, cam.K, cam.width, cam.height), background=bg)
                    if img.is_cuda:
                        torch.cuda.synchronize()

                ref = client.upload(scene_path)
                direct()
                client.render(ref, [cam], bg)  # warm: the worker loads and caches the scene
                client.render(ref, [cam], bg, encoding="float32")
                samples: dict[str, list[float]] = {"direct": [], "png": [], "float32": []}
                # Where an RPC's time goes, from the job's own timestamps (unix seconds): the call
                # until the job is queued, queued until a worker claims it, the job in the worker
                # beside the handler's render-and-encode time, and the job's end until the call ends.
                stages: dict[str, list[tuple[float, ...]]] = {"png": [], "float32": []}
                # The job's own render and encode times: the RPC minus both is what the service adds.
                in_worker: dict[str, list[tuple[float, float, float]]] = {"png": [], "float32": []}

                def rpc(encoding: str) -> float:
                    t0 = time.time()
                    wall = _timed(lambda: client.render(ref, [cam], bg, encoding=encoding))[0]  # type: ignore[arg-type]
                    t1 = time.time()
                    job = app.jobs.list(limit=1)[0]
                    assert job.started_at is not None and job.finished_at is not None
                    run = job.finished_at - job.started_at - job.metrics.get("seconds", float("nan"))
                    stages[encoding].append(
                        (job.created_at - t0, job.started_at - job.created_at, run, t1 - job.finished_at)
                    )
                    r, e = job.metrics.get("render_s", float("nan")), job.metrics.get("encode_s", float("nan"))
                    in_worker[encoding].append((r, e, wall - r - e))
                    return wall

                for _ in range(args.renders):  # back to back, so drift in the machine's load cancels
                    samples["direct"].append(_timed(direct)[0])
                    samples["png"].append(rpc("png"))
                    samples["float32"].append(rpc("float32"))
                results["render_direct_ms"] = 1e3 * statistics.median(samples["direct"])
                for enc in ("png", "float32"):
                    results[f"render_rpc_{enc}_ms"] = 1e3 * statistics.median(samples[enc])
                    results[f"render_overhead_{enc}_ms"] = 1e3 * statistics.median(
                        r - d for r, d in zip(samples[enc], samples["direct"], strict=True)
                    )
                for enc, rows in stages.items():
                    for name, col in zip(
                        ("submit", "queued", "worker_bookkeeping", "delivery"), zip(*rows, strict=True), strict=True
                    ):
                        results[f"render_{enc}_{name}_ms"] = 1e3 * statistics.median(col)
                for enc, rows in in_worker.items():
                    for name, col in zip(
                        ("worker_render", "worker_encode", "beside_render"), zip(*rows, strict=True), strict=True
                    ):
                        results[f"render_{enc}_{name}_ms"] = 1e3 * statistics.median(col)
                results["render_size"] = f"{cam.width}x{cam.height}"
                results["render_samples_ms"] = {k: [round(1e3 * t, 2) for t in v] for k, v in samples.items()}

                # -- small quantize jobs through the queue ------------------------------
                donut = client.upload(DONUT)
                tiny = vqpress.QuantizeConfig(dc_codebook=16, sh_codebook=16, scale_codebook=16, rot_codebook=16,
                                              kmeans_iters=1)  # fmt: skip
                eval_cam = vqpress.Camera(np.eye(4), np.array([[16.0, 0, 8], [0, 16, 8], [0, 0, 1]]), 16, 16)
                client.quantize(donut, tiny, cameras=[eval_cam]).wait(600)  # warm
                t0 = time.perf_counter()
                jobs = [client.quantize(donut, tiny, cameras=[eval_cam]) for _ in range(args.jobs)]
                for j in jobs:
                    j.wait(600)
                results["quantize_jobs_per_s"] = args.jobs / (time.perf_counter() - t0)
        finally:
            app.stop(0)

    print(f"service on loopback ({results['device']}, {results['cpus']} CPUs, scene {results['scene']}, "
          f"{args.size} MiB artifact in {CHUNK_BYTES >> 10} KiB chunks, median of {args.repeats} transfers "
          f"and {args.renders} renders, {args.jobs} jobs)\n")  # fmt: skip
    print(f"write + fsync of the same chunks into the data directory (the disk bound of an upload): "
          f"{results['disk_mib_s']:.0f} MiB/s\n")  # fmt: skip
    print("| transfer | raw grpcio | vqpress | ratio | goal | of min(raw, disk) |")
    print("|---|---:|---:|---:|---|---:|")
    rows = [
        (f"{what}, {f}", f"{k}_{f}", "raw_down" if k == "down" else "raw_up")
        for k, what in (
            ("up", "upload (hash, then stream)"),
            ("up_last", "upload (hashed while sent, digest last)"),
            ("up_known", "upload (digest given)"),
            ("down", "download (verified)"),
        )
        for f in digests.FUNCTIONS
    ]
    for label, ours, base in rows:
        ratio = float(results[f"{ours}_ratio"])  # type: ignore[arg-type]
        verdict = "met" if ratio >= RATIO_GOAL else f"missed by {RATIO_GOAL - ratio:.2f}"
        of_bound = f"{float(results[f'{ours}_of_bound']):.2f}x" if f"{ours}_of_bound" in results else "-"  # type: ignore[arg-type]
        print(f"| {label} | {results[f'{base}_mib_s']:.0f} MiB/s ({results[f'{base}_cpu_s']:.2f} CPU s) | "
              f"{results[f'{ours}_mib_s']:.0f} MiB/s ({results[f'{ours}_cpu_s']:.2f} CPU s) | {ratio:.2f}x | "
              f">= {RATIO_GOAL}x: {verdict} | {of_bound} |")  # fmt: skip
    print()
    print(f"| Render, {results['render_size']} | in-process | RPC | overhead per image | goal |")
    print("|---|---:|---:|---:|---|")
    for enc in ("png", "float32"):
        over = float(results[f"render_overhead_{enc}_ms"])  # type: ignore[arg-type]
        verdict = "met" if over <= OVERHEAD_GOAL_MS else f"missed by {over - OVERHEAD_GOAL_MS:.1f} ms"
        print(f"| {enc} | {results['render_direct_ms']:.1f} ms | {results[f'render_rpc_{enc}_ms']:.1f} ms | "
              f"{over:.1f} ms | <= {OVERHEAD_GOAL_MS:g} ms: {verdict} |")  # fmt: skip
    print("\n| Render RPC, where the time beside the render goes (median ms) | call -> queued | queued -> claimed "
          "| in the worker, beside render + encode | job end -> call end |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for enc in ("png", "float32"):
        cols = [float(results[f"render_{enc}_{n}_ms"]) for n in ("submit", "queued", "worker_bookkeeping", "delivery")]  # type: ignore[arg-type]
        print(f"| {enc} | " + " | ".join(f"{c:.1f}" for c in cols) + " |")
    print("\n| Render RPC (median ms) | in-process render | render in the worker | encode in the worker "
          "| RPC - the worker's render and encode |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for enc in ("png", "float32"):
        cols = [float(results[f"render_{enc}_{n}_ms"]) for n in ("worker_render", "worker_encode", "beside_render")]  # type: ignore[arg-type]
        print(f"| {enc} | {results['render_direct_ms']:.1f} | " + " | ".join(f"{c:.1f}" for c in cols) + " |")
    print(f"\nsmall quantize jobs through the queue: {results['quantize_jobs_per_s']:.1f} jobs/s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
