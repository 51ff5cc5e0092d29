"""Bytes per section of splat .vqp files, as stored and as this checkout's writer codes them.

    python bench/bench_vqp_coding.py SCENE.vqp [SCENE.vqp ...] [--input-bytes N ...]

Each file (written by any version of vqpress) is decoded and written again through
``QuantizedSplats.sections()`` with the config of its manifest, so two codings of the same quantized
scene are compared; the re-written file must decode to exactly the same values per Gaussian (it
exits non-zero otherwise). Prints, per section, the stored bytes and bits per Gaussian before and
after, the file totals and, with ``--input-bytes`` (one per file: the size of the scene it was
quantized from), the compression ratio before and after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "client"), str(REPO / "server")]

from vqpress.vqp import VqpFile, decode_splats, read_vqp  # noqa: E402
from vqpress_server.core.splats.quantize import ATTRIBUTES, QuantizeConfig, QuantizedSplats  # noqa: E402


def recode(f: VqpFile) -> bytes:
    """The file's quantized scene written by this checkout (same manifest, the current coding)."""
    m, s = f.manifest, f.sections
    attrs = [a for a in ATTRIBUTES if f"{a}_idx" in s]
    q = QuantizedSplats(
        config=QuantizeConfig(**m["config"]),
        num_gaussians=int(m["num_gaussians"]),
        sh_degree=int(m["sh_degree"]),
        box_min=m["position"]["box_min"],
        box_max=m["position"]["box_max"],
        means=s["means_morton"] if "means_morton" in s else s["means"],
        opacities=s["opacities"],
        codebooks={a: s[f"{a}_codebook"] for a in attrs},
        indices={a: s[f"{a}_idx"].astype(np.uint32) for a in attrs},
        order=np.arange(int(m["num_gaussians"])),
    )
    assert q.manifest() == m, "the manifest does not round-trip through QuantizedSplats"
    return q.to_vqp_bytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--input-bytes", type=int, nargs="*", default=[], help="size of each file's source scene")
    args = ap.parse_args()
    ok = True
    for i, path in enumerate(args.files):
        data = path.read_bytes()
        before = read_vqp(data, name=str(path))
        t0 = time.process_time()
        new = recode(before)
        cpu = time.process_time() - t0
        after = read_vqp(new)
        a, b = decode_splats(before), decode_splats(after)
        same = all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
        ok &= same
        n = int(before.manifest["num_gaussians"])
        print(f"\n{path}: {n:,} Gaussians, version {before.version} -> {after.version}, decoded identical: {same}")
        print(f"writing the file again: {cpu:.2f} CPU s")
        print("| section | before B | bits/G | after B | bits/G |\n|---|---:|---:|---:|---:|")
        for name, nb in before.section_bytes.items():
            na = after.section_bytes[name]
            print(f"| {name} | {nb:,} | {8 * nb / n:.2f} | {na:,} | {8 * na / n:.2f} |")
        hb, ha = len(data) - sum(before.section_bytes.values()), len(new) - sum(after.section_bytes.values())
        print(f"| header + manifest | {hb:,} | {8 * hb / n:.2f} | {ha:,} | {8 * ha / n:.2f} |")
        print(f"| **file** | **{len(data):,}** | {8 * len(data) / n:.2f} | **{len(new):,}** | {8 * len(new) / n:.2f} |")
        print(f"{len(data) - len(new):,} bytes fewer ({100 * (len(data) - len(new)) / len(data):.2f}%)")
        if i < len(args.input_bytes):
            src = args.input_bytes[i]
            print(f"ratio to the input ({src:,} B): {src / len(data):.2f}x -> {src / len(new):.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
