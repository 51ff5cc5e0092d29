"""vqpress.aio against a real loopback server: the same surface as the blocking client, with
coroutines; concurrent jobs through one channel."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path

import pytest
import vqpress
import vqpress.aio
from vqpress import JobState, QuantizeConfig, VqpressError, digests
from vqpress.vqp import read_vqp

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FAST = QuantizeConfig(dc_codebook=256, sh_codebook=64, scale_codebook=256, rot_codebook=256, kmeans_iters=3, seed=7)
SLOW = QuantizeConfig(dc_codebook=2048, sh_codebook=2048, scale_codebook=2048, rot_codebook=2048, kmeans_iters=1000)

pytestmark = pytest.mark.timeout(300)


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {n: inspect.signature(f) for n, f in vars(cls).items() if not n.startswith("_") and callable(f)}


@pytest.mark.parametrize("sync,aio", [(vqpress.Client, vqpress.aio.Client), (vqpress.Job, vqpress.aio.Job)])
def test_same_surface_as_the_blocking_client(sync: type, aio: type) -> None:
    s, a = _public(sync), _public(aio)
    assert set(s) <= set(a) | {"results"}, set(s) - set(a)
    for name in set(s) & set(a):
        assert list(s[name].parameters) == list(a[name].parameters), name


def test_async_client_end_to_end(tmp_path: Path) -> None:
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    app = build_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, workers=1, poll_s=0.05))
    app.start()

    async def scenario() -> None:
        async with vqpress.aio.Client(f"127.0.0.1:{app.port}", timeout=30) as c:
            assert await c.health() == "SERVING"
            assert (await c.server_info()).version == vqpress.__version__
            first = await c.upload(DATA / "donut_small.ply")
            assert (await c.upload(DATA / "donut_small.ply")).id == first.id
            # Sent at once and hashed as it goes, the digest last: the same artifact.
            assert (await c.server_info()).upload_digest_last
            again = await c.upload(DATA / "donut_small.ply", hash_first=False)
            assert again.id == first.id == digests.id_of_bytes((DATA / "donut_small.ply").read_bytes())
            jobs = [await c.quantize(DATA / n, FAST, evaluate=False) for n in ("donut_small.ply", "tarot_small.splat")]
            done = await asyncio.gather(*(j.wait(timeout=240) for j in jobs))
            assert [st.state for st in done] == [JobState.SUCCEEDED] * 2
            paths = await jobs[0].download_results(tmp_path / "out")
            assert sorted(p.name for p in paths) == ["donut_small.vqp", "report.json"]
            assert read_vqp(paths[0].read_bytes()).kind == "splats"
            assert json.loads((tmp_path / "out" / "report.json").read_text())["psnr"] is None
            slow = await c.quantize(first, SLOW)
            async for st in slow.watch(timeout=120):
                if st.state is JobState.RUNNING:
                    break
            await slow.cancel()
            with pytest.raises(vqpress.JobCancelled):
                await slow.wait(timeout=120)
            with pytest.raises(VqpressError) as e:
                await c.job("0" * 32)
            assert e.value.code == "NOT_FOUND"
            assert {j.id for j in await c.jobs([JobState.SUCCEEDED])} >= {j.id for j in jobs}

    try:
        asyncio.run(scenario())
    finally:
        app.stop(0)
