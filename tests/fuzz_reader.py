"""The reader side of the mutation fuzzer (tests/test_fuzz.py): run as a child process.

    python tests/fuzz_reader.py CASES.jsonl MEMORY_BUDGET_BYTES

Each line of CASES.jsonl is ``{"id": str, "path": str, "kind": "scene" | "vqp"}``. Before the first
case the child caps its own address space at what its imports took plus the budget
(RLIMIT_AS), so an allocation a reader should never have made raises MemoryError instead of
taking the machine down. For each case it prints ``{"start": id}``, reads the file as the service
would, and prints one result line:

    {"id", "outcome": "ok" | "error" | "bug", "type", "message", "cpu_s", "peak_traced"}

"ok": the reader returned values that are all finite (the documented repair applied); "error": it
refused the file with one of the project's format error types; "bug": anything else (another
exception type, a non-finite value returned, a reader out of memory).
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vqpress.vqp import VqpFormatError, decode_splats, read_vqp
from vqpress_server.core.errors import FormatError, VqpressInputError
from vqpress_server.core.splats.formats import load_scene
from vqpress_server.core.splats.quantize import decode_vqp_splats

EXPECTED = (FormatError, VqpressInputError, VqpFormatError)  # the readers' documented refusals


def _read_scene(path: Path) -> None:
    splats, _ = load_scene(path)  # read + the documented repair of non-finite values
    for name, t in splats.tensors().items():
        if not bool(torch.isfinite(t).all()):
            raise AssertionError(f"load_scene returned non-finite '{name}'")


def _read_vqp(path: Path) -> None:
    data = path.read_bytes()
    vqp = read_vqp(data, name=path.name)
    if vqp.kind != "splats":
        return
    arrays = decode_splats(vqp)  # the numpy decoder
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise AssertionError(f"vqpress.vqp.decode_splats returned non-finite '{name}'")
    splats = decode_vqp_splats(data, name=path.name)  # the server's torch twin
    for name, t in splats.tensors().items():
        if not bool(torch.isfinite(t).all()):
            raise AssertionError(f"decode_vqp_splats returned non-finite '{name}'")


def _vm_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    m = re.search(r"VmSize:\s+(\d+) kB", status)
    return int(m.group(1)) * 1024 if m else 0


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    path = Path(case["path"])
    read = _read_vqp if case["kind"] == "vqp" else _read_scene
    cpu0 = time.process_time()
    tracemalloc.start()
    try:
        read(path)
        outcome, typ, message = "ok", "", ""
    except EXPECTED as e:
        outcome, typ, message = "error", type(e).__name__, str(e)
        if "not enough memory" in message:  # read_splats' answer to a MemoryError: a reader over its budget
            outcome = "bug"
    except BaseException as e:  # noqa: BLE001 - every other exception is what the fuzzer looks for
        outcome, typ, message = "bug", type(e).__name__, str(e)[:500]
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "id": case["id"],
        "outcome": outcome,
        "type": typ,
        "message": message[:500],
        "cpu_s": time.process_time() - cpu0,
        "peak_traced": peak,
    }


def main() -> int:
    cases_file, budget = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    cases = [json.loads(line) for line in cases_file.read_text().splitlines() if line.strip()]
    limit = _vm_bytes() + budget
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(json.dumps({"ready": True, "address_space_limit": limit}), flush=True)
    for case in cases:
        print(json.dumps({"start": case["id"]}), flush=True)
        print(json.dumps(run_case(case)), flush=True)
        os.unlink(case["path"])  # the cases of one run can add up; each is done with once read
    return 0


if __name__ == "__main__":
    sys.exit(main())
