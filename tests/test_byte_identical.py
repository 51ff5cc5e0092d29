"""The .vqp bytes of the shared real scenes do not change when the code around the quantizer does.

Each case quantizes one scene of ../shared/data with small codebooks (seconds on a CPU) and
compares the file's sha256 with the digest recorded before the request path was restructured:
a refactoring that changes one byte of any stream (order, codebooks, indices, positions, opacity,
manifest) fails here. Skipped without the shared data. The digests hold for the pinned torch; a
new torch version may change k-means' floating-point sums and needs the digests recorded again.
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
DIGESTS = {  # recorded before the restructuring, with torch 2.13.0 (CPU)
    "donut": "d4529178b23fba336a681515d442de623484f64e059682ea9ddb6c223113ff8f",  # 293,457 B
    "donut_pruned": "4ba95659406ec8cf10cc9a677ee1ad69bf25a5ba9311b71c24c65799c6469730",  # 236,130 B, 36,500 kept
    "guitar_compressed_ply": "4b8ec40cc7fcae45a96dbc59ea55300e5225de9f34e86e611fa21eb63ff58a68",  # 538,704 B
    "inria_sh3": "06944dd1b8e0a443317fd269ecd15736a03b081beed50a1c2f2e9b189762fb70",  # 65,174 B
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
