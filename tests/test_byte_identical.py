"""The .vqp bytes of the shared real scenes do not change when the code around the quantizer does.

Each case quantizes one scene of ../shared/data with small codebooks (seconds on a CPU) and
compares the file's sha256 with the digest recorded before the request path was restructured:
a refactoring that changes one byte of any stream (order, codebooks, indices, positions, opacity,
manifest) fails here. Skipped without the shared data. The digests hold for the pinned torch; a
new torch version may change k-means' floating-point sums and needs the digests recorded again.
Each case runs in its own process on one thread with MKL's CPU-independent code path
(MKL_CBWR=COMPATIBLE): MKL otherwise picks its kernels by CPU model, and the view importance's
matrix products round differently on an AVX2/AVX-512 Intel path than on the generic one (the
pruned case came out one byte apart on two machines with the same code).
A change of the coding by design records them again too, after checking that every case decodes to
the same scene as the file it replaces (as when codebooks came to be numbered by use, indices
stored with "backref" and Morton deltas with "bitlen": the same decoded values per Gaussian,
1.3-3.1% fewer bytes; the low-precision case, without zstd, kept its bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from vqpress_server.core.render.cameras import orbit_cameras
from vqpress_server.core.splats.compress import compress_file
from vqpress_server.core.splats.formats import read_splats
from vqpress_server.core.splats.quantize_config import QuantizeConfig

SMALL = QuantizeConfig(dc_codebook=64, sh_codebook=32, scale_codebook=64, rot_codebook=64, kmeans_iters=3)
LOW_PRECISION = replace(SMALL, position_precision="fp16", opacity_precision="fp16", entropy="none", sh_degree=1)

# (scene under ../shared/data, config, importance cameras: None or (n, width, height) orbit views) -> sha256
CASES = {
    "donut": ("donut_3dgs_ply/fused.ply", SMALL, None),
    "donut_pruned": ("donut_3dgs_ply/fused.ply", replace(SMALL, prune=0.2), (2, 48, 48)),
    "inria_sh3": ("inria_sh3_small/point_cloud_iter7000.ply", SMALL, None),
    "inria_sh3_low_precision": ("inria_sh3_small/point_cloud_iter7000.ply", LOW_PRECISION, None),
    "guitar_compressed_ply": ("playcanvas_compressed/guitar.compressed.ply", SMALL, None),
}
RECORDED_TORCH = "2.13."
DIGESTS = {  # recorded with torch 2.13.0 (CPU); "was": the size before the coding of .vqp version 2
    "donut": "07ee20e8991460d560a6b311ea1298b18fca4f968738726247279081e376bc1a",  # 289,398 B (was 293,457)
    # donut_pruned recorded again when the CPU's blend weights came to project precomputed 3D
    # covariances (4e-5 relative rounding in the weights, the same pruned Gaussians): 232,125 -> 232,126 B
    "donut_pruned": "fe1aef03344c403857b90eef445e192e29123887bec2f2f70bb18c854e05d457",  # 232,126 B (236,130)
    "guitar_compressed_ply": "d7d55aacf56c4d5ace65dfc5c544900636da47c304c138351447af574f6dda9f",  # 531,637 B (538,704)
    "inria_sh3": "9d75255f48f968d8d3d6b6df01dbcc7c48df43335cf5a91d9c279432259491ed",  # 63,179 B (65,174)
    "inria_sh3_low_precision": "16b4d8f560259a149aa1ae01f3eb7022a88b19586d7e35f7daf0eefe89c0e892",  # 102,864 B
}


def _compress(case: str, src: Path, dst: Path) -> dict[str, object]:
    """Quantize one case into dst (run in the child process this module starts)."""
    _, config, orbit = CASES[case]
    cams = None
    if orbit is not None:
        n, w, h = orbit
        cams = orbit_cameras(read_splats(src), n, w, h)
    torch.set_num_threads(1)  # one thread: the same float sums however many cores there are
    report = compress_file(src, dst, config, importance_cameras=cams, evaluate=False, device="cpu")
    return {"kept": report.num_gaussians, "input": report.num_gaussians_input}


@pytest.mark.parametrize("case", sorted(CASES))
def test_vqp_bytes_unchanged(case: str, shared_data: Path, tmp_path: Path) -> None:
    if not torch.__version__.startswith(RECORDED_TORCH):
        pytest.skip(f"digests recorded with torch {RECORDED_TORCH}, this is {torch.__version__}")
    rel, _, orbit = CASES[case]
    src = shared_data / rel
    if not src.is_file():
        pytest.skip(f"{rel} is not in the shared data")
    dst = tmp_path / "scene.vqp"
    env = dict(os.environ, MKL_CBWR="COMPATIBLE", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, case, str(src), str(dst)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    if orbit is not None:
        assert counts["kept"] < counts["input"]  # the pruning path ran
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == DIGESTS[case], f"{case}: the .vqp bytes changed"


if __name__ == "__main__":
    print(json.dumps(_compress(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
