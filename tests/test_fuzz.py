"""A seeded mutation fuzzer over real scene and .vqp files: every mutated file is either refused
with one of the project's format errors or read into finite values (the documented repair), each
in bounded CPU time and memory.

Seeds: the small fixtures of tests/data (always, so CI always fuzzes something) and the real
scenes of the shared data (skipped without it), plus .vqp files quantized from them here.
Mutations hit the layer a reader decodes: bytes anywhere (biased to headers), length fields, PLY
header counts, the inflated body of a gzip .spz (re-compressed), and a .vqp's manifest and section
payloads with their checksums recomputed (else the CRC would refuse everything).

The reader runs in a child process (tests/fuzz_reader.py) whose address space is capped at its
imports plus ``MEMORY_BUDGET``: an allocation no reader should make fails there, not on the machine.
Each case's CPU time (not wall time: CI is loaded) is held to ``CPU_BUDGET_S``.

    VQPRESS_FUZZ_CASES=5000 VQPRESS_FUZZ_SEED=7 pytest tests/test_fuzz.py    # a longer run
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
import re
import select
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
CASES = int(os.environ.get("VQPRESS_FUZZ_CASES", "150"))  # per test: two tests, 300 cases in all
SEED = int(os.environ.get("VQPRESS_FUZZ_SEED", "20261202"))
MEMORY_BUDGET = 1536 << 20  # address space a reader may add while reading one mutated file: 1.5 GiB
CPU_BUDGET_S = 30.0  # CPU seconds one case may take (the largest seed reads in well under 1 s)
CASE_TIMEOUT_S = 300.0  # a case that has not answered after this long is a hang (generous: CI is loaded)
INTERESTING_U32 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 10**9)
INTERESTING_U64 = (2**32, 2**40, 2**63 - 1, 2**64 - 1)
HUGE_FLOATS = (float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 1e31, 3.5e38)
F32_EXTREMES = (float("nan"), float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e31)

FIXTURE_SCENES = ["donut_small.ply", "lego_sh3_small.ply", "biker_small.spz", "biker_small.compressed.ply",
                  "tarot_small.splat"]  # fmt: skip
SHARED_SCENES = [
    "donut_3dgs_ply/fused.ply",
    "inria_sh3_small/point_cloud_iter7000.ply",
    "playcanvas_compressed/biker.spz",
    "playcanvas_compressed/guitar.compressed.ply",
    "tarot_cards_splat/academic_tarot_cards.splat",
]


# -- mutators: (data, rng) -> data ------------------------------------------------------------
def _offset(data: bytes, rng: random.Random, align: int = 1) -> int:
    if not data:
        return 0
    top = min(len(data), 512) if rng.random() < 0.6 else len(data)  # headers are where lies live
    return (rng.randrange(top) // align) * align


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[_offset(data, rng)] ^= 1 << rng.randrange(8)
    return bytes(b)


def set_int(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if len(b) < 8:
        return data
    off = min(_offset(data, rng, align=4), len(b) - 8)
    if rng.random() < 0.8:
        struct.pack_into("<I", b, off, rng.choice(INTERESTING_U32))
    else:
        struct.pack_into("<Q", b, off, rng.choice(INTERESTING_U64))
    return bytes(b)


def set_float(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if len(b) < 8:
        return data
    off = min(_offset(data, rng, align=4), len(b) - 4)
    struct.pack_into("<f", b, off, rng.choice(HUGE_FLOATS[:3]) if rng.random() < 0.5 else 3.4e38)
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def append(data: bytes, rng: random.Random) -> bytes:
    tail = rng.choice([b"\0", b"\0" * rng.randint(1, 4096), os.urandom(rng.randint(1, 64)), data[:256]])
    return data + tail


def splice(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 2:
        return data
    i, j = sorted(rng.randrange(len(data)) for _ in range(2))
    if rng.random() < 0.5:
        return data[:i] + data[j:]  # delete a span
    return data[:j] + data[i:j] + data[j:]  # duplicate a span


def ply_header_number(data: bytes, rng: random.Random) -> bytes:
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        return flip_bits(data, rng)
    head = data[:end].decode("latin-1")
    nums = list(re.finditer(r"\d+", head))
    if not nums:
        return data
    m = rng.choice(nums)
    new = str(rng.choice([0, 1, int(m.group()) - 1, int(m.group()) + 1, 2**31, 2**32 + 5, 10**15]))
    return (head[: m.start()] + new + head[m.end():]).encode("latin-1") + data[end:]  # fmt: skip


BYTE_MUTATORS: list[Callable[[bytes, random.Random], bytes]] = [
    flip_bits, set_int, set_float, truncate, append, splice, ply_header_number,
]  # fmt: skip


def mutate_gzip_body(data: bytes, rng: random.Random) -> bytes:
    """Mutate what a gzip .spz inflates to, then compress it again (sometimes with trailing garbage)."""
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return flip_bits(data, rng)
    out = gzip.compress(rng.choice(BYTE_MUTATORS[:6])(raw, rng), compresslevel=1)
    return out + (os.urandom(rng.randint(1, 16)) if rng.random() < 0.1 else b"")


def mutate_vqp(data: bytes, rng: random.Random) -> bytes:
    """Mutate a .vqp's manifest or one section payload, keeping the checksums valid."""
    hdr = struct.Struct("<8sHHII")
    magic, version, flags, mlen, _ = hdr.unpack_from(data)
    doc = json.loads(data[hdr.size : hdr.size + mlen])
    payload = bytearray(data[hdr.size + mlen :])
    r = rng.random()
    if r < 0.08:  # a deeply nested manifest: valid JSON, nested past any reader's limit
        depth = rng.choice([33, 1000, 100_000])
        text = json.dumps(doc).replace('"meta": {', '"meta": {"extra": ' + "[" * depth + "]" * depth + ", ", 1)
        m = text.encode()
        return hdr.pack(magic, version, flags, len(m), zlib.crc32(m)) + m + bytes(payload)
    elif r < 0.45:  # a manifest field
        e = rng.choice(doc["sections"])
        key = rng.choice(["shape", "raw_length", "length", "bits", "offset", "dtype", "codec", "filters",
                          "num_gaussians", "sh_degree", "box", "position_bits"])  # fmt: skip
        if key == "shape":
            e["shape"] = [rng.choice([0, 1, 2**31, 2**40 - 1, s * 1000 + 1]) for s in e["shape"]]
            if rng.random() < 0.5:  # a consistent lie: the declared sizes agree with the new shape
                n = 1
                for s in e["shape"]:
                    n *= s
                e["raw_length"] = (n * e["bits"] + 7) // 8 if e["bits"] else n * {"uint8": 1, "uint16": 2,
                    "uint32": 4, "uint64": 8, "float16": 2, "float32": 4}.get(e["dtype"], 1)  # fmt: skip
        elif key in ("raw_length", "length", "offset"):
            e[key] = rng.choice([0, e[key] + 1, max(e[key] - 1, 0), 2**40, -1])
        elif key == "bits":
            e["bits"] = rng.choice([None, 0, 1, 33, (e["bits"] or 8) + 1, "x"])
        elif key == "dtype":
            e["dtype"] = rng.choice(["float64", "uint8", "int8", "object", "float16"])
        elif key == "codec":
            e["codec"] = rng.choice(["raw", "zstd", "gzip"])
        elif key == "filters":
            e["filters"] = rng.choice(
                [
                    [],
                    ["delta"],
                    ["shuffle"],
                    ["delta", "shuffle"],
                    ["backref"],
                    ["backref", "shuffle"],
                    ["delta", "bitlen"],
                    ["x"],
                ]
            )
        elif key in ("num_gaussians", "sh_degree"):
            doc["meta"][key] = rng.choice([0, -1, 4, 2**40, "3", None, doc["meta"].get(key, 0) + 1])
        elif key == "box":
            pos = doc["meta"].get("position", {})
            field = rng.choice(["box_min", "box_max"])
            if isinstance(pos, dict) and isinstance(pos.get(field), list):
                pos[field][rng.randrange(3)] = rng.choice(HUGE_FLOATS)
        else:
            pos = doc["meta"].get("position", {})
            if isinstance(pos, dict):
                pos["bits"] = rng.choice([0, 1, 17, 16, "8"])
    else:  # a payload: mutated bytes with a recomputed crc (stored raw, or as a new zstd frame)
        import zstandard

        e = rng.choice(doc["sections"])
        start, end = e["offset"], e["offset"] + e["length"]
        stored = bytes(payload[start:end])
        raw = zstandard.ZstdDecompressor().decompress(stored) if e["codec"] == "zstd" else stored
        if e["dtype"] in ("float16", "float32") and raw and rng.random() < 0.7:
            fmt, size = ("<e", 2) if e["dtype"] == "float16" else ("<f", 4)
            b = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                off = rng.randrange(len(b) // size) * size
                struct.pack_into(fmt, b, off, rng.choice(HUGE_FLOATS[:3] if fmt == "<e" else F32_EXTREMES))
            raw = bytes(b)
        else:
            raw = rng.choice(BYTE_MUTATORS[:3])(raw, rng)
        new = zstandard.ZstdCompressor(level=1).compress(raw) if e["codec"] == "zstd" else raw
        payload[start:end] = new
        delta = len(new) - len(stored)
        e["length"], e["crc32"] = len(new), zlib.crc32(new)
        for other in doc["sections"]:
            if other["offset"] > start:
                other["offset"] += delta
    m = json.dumps(doc).encode()
    return hdr.pack(magic, version, flags, len(m), zlib.crc32(m)) + m + bytes(payload)


def mutate(seed_path: Path, data: bytes, rng: random.Random) -> bytes:
    if seed_path.suffix == ".vqp" and rng.random() < 0.8:
        return mutate_vqp(data, rng)
    if data[:2] == b"\x1f\x8b" and rng.random() < 0.7:
        return mutate_gzip_body(data, rng)
    out = data
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):
        out = rng.choice(BYTE_MUTATORS)(out, rng)
    return out


# -- seeds ------------------------------------------------------------------------------------
def _vqp_of(scene: Path, out: Path) -> Path:
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.quantize import QuantizeConfig

    cfg = QuantizeConfig(dc_codebook=64, sh_codebook=64, scale_codebook=64, rot_codebook=64, kmeans_iters=1,
                         importance="none", prune=0.0)  # fmt: skip
    compress_file(scene, out, cfg, evaluate=False, device="cpu")
    alt = out.with_name(out.stem + "_fp.vqp")  # float positions and opacities: the sections NaN can reach
    floats = dataclasses.replace(cfg, position_precision="fp32", opacity_precision="fp16")
    compress_file(scene, alt, floats, evaluate=False, device="cpu")
    return out


def _gzip_spz_of(scene: Path, out: Path) -> Path:
    from vqpress_server.core.splats.formats import read_splats, write_splats

    write_splats(read_splats(scene), out)  # .spz v2: gzip
    return out


def _seeds(tmp: Path, scenes: list[Path]) -> list[Path]:
    seeds = list(scenes)
    first_ply = next(p for p in scenes if p.suffix == ".ply" and not p.name.endswith(".compressed.ply"))
    vqp = _vqp_of(first_ply, tmp / f"{first_ply.stem}.vqp")
    seeds += [vqp, vqp.with_name(vqp.stem + "_fp.vqp"), _gzip_spz_of(first_ply, tmp / f"{first_ply.stem}.spz")]
    return seeds


# -- the run ----------------------------------------------------------------------------------
def _run(tmp: Path, seeds: list[Path], n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    blobs = {p: p.read_bytes() for p in seeds}
    cases, meta = [], {}
    for i in range(n):
        src = rng.choice(seeds)
        data = mutate(src, blobs[src], rng)
        suffix = ".compressed.ply" if src.name.endswith(".compressed.ply") else src.suffix
        path = tmp / f"case{i:05d}{suffix}"
        path.write_bytes(data)
        cid = f"{seed}:{i}"
        cases.append({"id": cid, "path": str(path), "kind": "vqp" if suffix == ".vqp" else "scene"})
        meta[cid] = src.name
    cases_file = tmp / "cases.jsonl"
    cases_file.write_text("".join(json.dumps(c) + "\n" for c in cases))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'client'}:{REPO / 'server'}", "MALLOC_ARENA_MAX": "2",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    counts = {"ok": 0, "error": 0}
    bugs: list[str] = []
    current = None
    with subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fuzz_reader.py"), str(cases_file), str(MEMORY_BUDGET)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], CASE_TIMEOUT_S)
                if not ready:
                    pytest.fail(f"case {current} ({meta.get(current)}) did not finish in {CASE_TIMEOUT_S:.0f} s")
                line = proc.stdout.readline()
                if not line:
                    break
                msg = json.loads(line)
                if "start" in msg:
                    current = msg["start"]
                    continue
                if "ready" in msg:
                    continue
                src = meta[msg["id"]]
                if msg["outcome"] == "bug":
                    bugs.append(f"{msg['id']} ({src}): {msg['type']}: {msg['message']}")
                elif msg["cpu_s"] > CPU_BUDGET_S:
                    bugs.append(f"{msg['id']} ({src}): took {msg['cpu_s']:.1f} CPU s (budget {CPU_BUDGET_S:.0f})")
                else:
                    counts[msg["outcome"]] += 1
                current = None
        finally:
            if proc.poll() is None and current is not None:
                proc.kill()  # a hang: the case is reported below
            err = proc.stderr.read()
            rc = proc.wait()
    if current is not None:  # the child died inside a case: killed for memory, or a crash
        bugs.append(f"{current} ({meta.get(current)}): the reader process died (status {rc}): {err[-2000:]}")
    assert rc == 0 or bugs, err[-2000:]
    assert not bugs, "\n".join(bugs[:20])
    assert counts["ok"] + counts["error"] == n
    return counts


@pytest.mark.timeout(1800)
def test_mutated_fixtures_are_refused_or_repaired(tmp_path: Path) -> None:
    counts = _run(tmp_path, _seeds(tmp_path, [DATA / name for name in FIXTURE_SCENES]), CASES, SEED)
    # The mutations reach past the first check: some files are still readable (and repaired)
    # and most are refused; both kinds occur at every seed.
    assert counts["ok"] > 0 and counts["error"] > 0, counts


@pytest.mark.timeout(1800)
def test_mutated_real_scenes_are_refused_or_repaired(tmp_path: Path, shared_data: Path) -> None:
    scenes = [shared_data / rel for rel in SHARED_SCENES if (shared_data / rel).is_file()]
    if not scenes:
        pytest.skip("none of the shared scenes is present")
    counts = _run(tmp_path, _seeds(tmp_path, scenes), CASES, SEED + 1)
    assert counts["ok"] > 0 and counts["error"] > 0, counts
