"""The .vqp bytes of the shared real scenes do not change when the code around the quantizer does.

Each case quantizes one scene of ../shared/data with small codebooks (seconds on a CPU) and
compares the file's sha256 with the digest recorded before the request path was restructured:
a refactoring that changes one byte of any stream (order, codebooks, indices, positions, opacity,
manifest) fails here. Skipped without the shared data. The digests hold for the pinned torch; a
new torch version may change k-means' floating-point sums and needs the digests recorded again.
A change of the coding by design records them again too, after checking that every case decodes to
the same scene as the file it replaces (as when codebooks came to be numbered by use and indices
stored with "backref": the same decoded values per Gaussian, 0.6-3% fewer bytes; the
low-precision case, without zstd, kept its bytes).
"""

from __future__ import annotations

import hashlib
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
DIGESTS = {  # recorded with torch 2.13.0 (CPU); "was": the size before codebooks were numbered by use
    "donut": "c841643fb67f417542337fffb93bfade982e63cc85f59b4f89275b8829c6efe9",  # 291,658 B (was 293,457)
    "donut_pruned": "58250f7275708282fc2b1ce6b2690628c3f0822443536d574a1e3a0c804cc137",  # 234,348 B (236,130)
    "guitar_compressed_ply": "bf66ea63b9dc2f7022879df738c8c38428c6407715ef70ebf21eecee24572b1e",  # 534,631 B (538,704)
    "inria_sh3": "11d3f0bfada6b475ad26512d33798de29f2ace949dd57b1e87df7943123de544",  # 63,189 B (65,174), version 2
    "inria_sh3_low_precision": "16b4d8f560259a149aa1ae01f3eb7022a88b19586d7e35f7daf0eefe89c0e892",  # 102,864 B
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_vqp_bytes_unchanged(case: str, shared_data: Path, tmp_path: Path) -> None:
    if not torch.__version__.startswith(RECORDED_TORCH):
        pytest.skip(f"digests recorded with torch {RECORDED_TORCH}, this is {torch.__version__}")
    rel, config, orbit = CASES[case]
    src = shared_data / rel
    if not src.is_file():
        pytest.skip(f"{rel} is not in the shared data")
    cams = None
    if orbit is not None:
        n, w, h = orbit
        cams = orbit_cameras(read_splats(src), n, w, h)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same float sums on any machine
    try:
        dst = tmp_path / "scene.vqp"
        report = compress_file(src, dst, config, importance_cameras=cams, evaluate=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    if orbit is not None:
        assert report.num_gaussians < report.num_gaussians_input  # the pruning path ran
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == DIGESTS[case], f"{case}: the .vqp bytes changed"
