"""Training and neural-field jobs through the job table and a real worker pool: TRAIN_FIELD (2D and 3D),
post-hoc field QUANTIZE, field RENDER and EXPORT, TRAIN_SPLATS, resume after a killed worker, bad specs."""

from __future__ import annotations

import json
import math
import os
import signal
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from vqpress.field import decode_field as np_decode_field
from vqpress.field import render_image_field
from vqpress_server.artifacts import ArtifactStore
from vqpress_server.core.data.config import DatasetConfig
from vqpress_server.core.errors import VqpressInputError
from vqpress_server.core.fields.config import FieldQuantizeConfig, field_config_from_spec, train_config_from_spec
from vqpress_server.core.splats.train_config import SplatTrainConfig
from vqpress_server.jobs import JobState, JobTable, WorkerPool
from vqpress_server.jobs.context import checkpoint_dir_for
from vqpress_server.jobs.specs import (
    CameraSpec,
    ExportFieldSpec,
    JobSpec,
    QuantizeFieldSpec,
    RenderFieldSpec,
    TrainFieldSpec,
    TrainSplatsSpec,
    spec_from_json,
)
from vqpress_server.settings import Settings

TEST_DATA = Path(__file__).resolve().parent / "data"
GRID = {"levels": 3, "base_resolution": 8, "max_resolution": 64, "features": 8}
DEC = {"hidden": 32, "layers": 1}
FAST = {"steps": 100, "batch_size": 2048, "lr": 0.02, "mlp_lr": 0.02, "log_every": 20}
GRID3 = {"levels": 2, "base_resolution": 8, "max_resolution": 16, "features": 4, "combine": "sum"}
DEC3 = {"hidden": 32, "layers": 1, "color_layers": 1, "dir_degree": 2}
TRAIN3 = {  # the stratified trainer: the default (the Instant-NGP-class marcher) is sized for a GPU
    "sampler": "stratified",
    "loss": "mse",
    "lr_decay": "none",
    "weight_decay": 0.0,
    "time_budget_s": 0.0,
    "steps": 30,
    "batch_size": 512,
    "samples_per_ray": 24,
    "lr": 0.03,
    "occupancy_resolution": 16,
    "occupancy_warmup": 1000,
    "log_every": 10,
}
VIEW = 40  # pixels of the tiny posed-photo archive


@dataclass
class Service:
    settings: Settings
    store: ArtifactStore
    table: JobTable
    pool: WorkerPool
    image_id: str  # the astronaut crop as a "png" artifact
    archive_id: str  # a NeRF-synthetic zip of the donut rendered by the twin
    donut_id: str  # donut_small.ply as a "ply" artifact

    def run(self, spec: JobSpec, timeout: float = 280.0):  # noqa: ANN201
        job = self.table.submit_spec(spec)
        self.pool.notify()
        return wait(self.table, job.id, lambda r: r.terminal, timeout)


def train_field(
    dataset: str, dims: int, field: dict | None = None, train: dict | None = None, options: dict | None = None
) -> TrainFieldSpec:
    """The TRAIN_FIELD spec the RPC layer builds for a dataset of ``dims`` (2: one image, 3: photos)
    from the fields a request set, with the same core functions and defaults."""
    source = "the dataset is a single image (2D field)" if dims == 2 else "the dataset is posed photos (3D field)"
    return TrainFieldSpec(
        dataset,
        field_config_from_spec(field, dims, source, radiance_defaults=True),
        train_config_from_spec(train, dims),
        DatasetConfig(**(options or {})),
    )


def cams_of(dicts: list[dict]) -> tuple[CameraSpec, ...]:
    return tuple(CameraSpec.from_json(d) for d in dicts)


# Generous bounds (a loaded 2-core machine trains slowly); the wait itself ends on the job's own change.
def wait(table: JobTable, job_id: str, pred, timeout: float = 280.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    rec = table.get(job_id)
    while not pred(rec):
        left = deadline - time.monotonic()
        assert left > 0, f"job {job_id} stuck: {rec}"
        rec = table.wait_for_change(job_id, rec.version, timeout=min(left, 0.5))
    return rec


def _donut_archive(path: Path) -> Path:
    """Six 40x40 views of the donut rendered by the twin on white, as a NeRF-synthetic zip."""
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import load_scene

    scene, _ = load_scene(TEST_DATA / "donut_small.ply")
    cams = orbit_cameras(scene, 6, VIEW, VIEW)
    frames = []
    with zipfile.ZipFile(path, "w") as zf:
        for i, cam in enumerate(cams):
            img = render(scene, cam, background=(1.0, 1.0, 1.0))
            c2w = np.linalg.inv(cam.viewmat)
            c2w[:3, 1:3] *= -1.0  # OpenCV -> OpenGL axes
            frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w.tolist()})
            png = path.parent / f"r_{i}.png"
            Image.fromarray((img.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)).save(png)
            zf.write(png, f"donut/train/r_{i}.png")
        angle = 2 * math.atan(0.5 * VIEW / float(cams[0].K[0, 0]))
        zf.writestr("donut/transforms_train.json", json.dumps({"camera_angle_x": angle, "frames": frames}))
    return path


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("fieldjobs")
    s = Settings(data_dir=tmp / "data", workers=1, poll_s=0.05, heartbeat_s=0.2, lease_s=10.0, max_attempts=3)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    image = store.put_file(TEST_DATA / "astronaut_crop128.png", "astronaut.png", "png")
    archive = store.put_file(_donut_archive(tmp / "donut.zip"), "donut.zip", "dataset")
    donut = store.put_file(TEST_DATA / "donut_small.ply", "donut.ply", "ply")
    with WorkerPool(s) as pool:
        assert pool.wait_ready(240)  # a generous bound: a loaded machine starts torch slowly
        yield Service(s, store, table, pool, image.id, archive.id, donut.id)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:  # [128, 128, 3] float32 in [0, 1]
    return np.asarray(Image.open(TEST_DATA / "astronaut_crop128.png").convert("RGB"), np.float32) / 255.0


@pytest.fixture(scope="module")
def dense_field(svc: Service) -> str:
    """A 2D field trained with the uncompressed dense grid, as a .vqp artifact id."""
    rec = svc.run(train_field(svc.image_id, 2, {"grid": {"kind": "dense", **GRID}, "decoder": DEC}, FAST))
    assert rec.state is JobState.SUCCEEDED, rec
    return rec.results[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return -10.0 * math.log10(float(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def camera(width: int, height: int, name: str = "") -> dict:
    f = float(max(width, height))
    return {
        "viewmat": np.eye(4).reshape(-1).tolist(),
        "K": [f, 0, width / 2, 0, f, height / 2, 0, 0, 1],
        "width": width,
        "height": height,
        "name": name,
    }


# -- 2D image fields ---------------------------------------------------------------------
def test_train_image_field_job_decodes_with_numpy_and_reaches_floor(svc: Service, crop: np.ndarray) -> None:
    rec = svc.run(train_field(svc.image_id, 2, {"grid": {"kind": "vqad", "bits": 4, **GRID}, "decoder": DEC}, FAST))
    assert rec.state is JobState.SUCCEEDED, rec
    assert rec.result_names == ["field.vqp", "report.json", "preview.png"]
    vqp_id, report_id, preview_id = rec.results
    assert svc.store.stat(vqp_id).kind == "vqp" and svc.store.stat(preview_id).kind == "png"
    data = svc.store.read_bytes(vqp_id)
    f = np_decode_field(data)
    assert f.extra["height"] == 128 and f.extra["width"] == 128 and f.grid["storage"] == "vq" and f.grid["bits"] == 4
    img = render_image_field(f, 128, 128)
    # Measured 27.2 dB for this crop (100 steps of 2048 pixels, b = 4); the floor leaves 1.7 dB.
    got = psnr(img, crop)
    assert got >= 25.5, got
    report = json.loads(svc.store.read_bytes(report_id))
    assert report["method"] == "vqad b=4" and report["dims"] == 2 and report["steps"] == 100
    assert report["total_bytes"] == len(data) == rec.metrics["vqp_bytes"]
    assert sum(report["section_bytes"].values()) <= len(data)
    assert 4.0 <= report["bits_per_vertex"] <= 6.0  # b bits per vertex plus codebooks
    assert report["psnr"] == pytest.approx(got, abs=0.05) and rec.metrics["psnr"] == pytest.approx(report["psnr"])
    assert report["resumed_from_step"] is None and report["peak_memory_bytes"] is None  # CPU
    assert [h["step"] for h in report["history"]] == [20, 40, 60, 80, 100]
    preview = np.asarray(Image.open(svc.store.path(preview_id)))
    assert preview.shape == (128, 128, 3)
    assert np.abs(preview.astype(np.float32) / 255 - img).max() <= 1 / 255 + 1e-3
    # Progress carried the step, loss and PSNR of training.
    assert rec.metrics["step"] == 100 and rec.metrics["loss"] > 0
    assert not checkpoint_dir_for(svc.settings.scratch_dir, rec.id).exists()


@pytest.mark.parametrize(
    ("options", "psnr_floor"), [({"method": "kmvq", "bits": 4}, 29.0), ({"method": "lra", "rank": 2}, 35.0)]
)
def test_posthoc_quantize_job_makes_a_dense_field_smaller(
    svc: Service, dense_field: str, options: dict, psnr_floor: float
) -> None:
    rec = svc.run(QuantizeFieldSpec(dense_field, FieldQuantizeConfig.from_dict(options)))
    assert rec.state is JobState.SUCCEEDED, rec
    assert rec.result_names == ["field.vqp", "report.json"]
    before = svc.store.stat(dense_field).size
    after = svc.store.stat(rec.results[0]).size
    report = json.loads(svc.store.read_bytes(rec.results[1]))
    assert report["input_bytes"] == before and report["output_bytes"] == after
    assert after < before / 3 and rec.metrics["ratio"] == pytest.approx(before / after)
    # Measured: kmVQ b=4 32.5 dB, LRA rank 2 42.1 dB against the dense field's own image.
    assert report["psnr_reference"] == "source field's image (128x128)"
    assert rec.metrics["psnr"] >= psnr_floor, rec.metrics
    assert report["source_psnr"] > 28  # the dense field's PSNR against the photo, stored at training
    f = np_decode_field(svc.store.read_bytes(rec.results[0]))
    assert f.grid["storage"] == ("vq" if options["method"] == "kmvq" else "lowrank")
    ref = render_image_field(np_decode_field(svc.store.read_bytes(dense_field)), 128, 128)
    assert psnr(render_image_field(f, 128, 128), ref) == pytest.approx(rec.metrics["psnr"], abs=0.1)


def test_render_and_export_an_image_field(svc: Service, dense_field: str) -> None:
    cams = [camera(128, 128, "full"), camera(64, 48, "small")]
    rec = svc.run(RenderFieldSpec(dense_field, cams_of(cams), encoding="float32"))
    assert rec.state is JobState.SUCCEEDED, rec
    assert rec.result_names == ["0000_full.npy", "0001_small.npy"]
    f = np_decode_field(svc.store.read_bytes(dense_field))
    for rid, (w, h) in zip(rec.results, [(128, 128), (64, 48)], strict=True):
        got = np.load(svc.store.path(rid), allow_pickle=False)
        assert got.dtype == np.float32 and got.shape == (h, w, 3)
        np.testing.assert_allclose(got, render_image_field(f, h, w), atol=1e-4)
    png = svc.run(RenderFieldSpec(dense_field, cams_of(cams[1:]), encoding="png"))
    assert png.state is JobState.SUCCEEDED and png.result_names == ["0000_small.png"], png
    assert np.asarray(Image.open(svc.store.path(png.results[0]))).shape == (48, 64, 3)

    ex = svc.run(ExportFieldSpec(dense_field))
    assert ex.state is JobState.SUCCEEDED, ex
    again = np_decode_field(svc.store.read_bytes(ex.results[0]))
    np.testing.assert_array_equal(render_image_field(again, 32, 32), render_image_field(f, 32, 32))
    assert svc.store.read_bytes(ex.results[0]) == svc.store.read_bytes(dense_field)  # the same manifest and arrays


# -- 3D radiance fields and splat training on a tiny archive -----------------------------------
@pytest.mark.parametrize("sparse", [False, True])
def test_train_and_render_a_tiny_radiance_field(svc: Service, sparse: bool) -> None:
    from vqpress_server.core.fields.serialize import decode_field
    from vqpress_server.core.fields.train import SceneBox, render_field
    from vqpress_server.core.render.cameras import camera_from_dict

    grid = {"kind": "vqad", "bits": 4, **GRID3}
    train = dict(TRAIN3)
    if sparse:  # the 16^3 level sparse, allocated from the occupancy grid at step 15
        grid["sparse_min_resolution"] = 16
        train.update(occupancy_warmup=15, occupancy_update_every=5)
    rec = svc.run(train_field(svc.archive_id, 3, {"grid": grid, "decoder": DEC3}, train, {"test_every": 3}))
    assert rec.state is JobState.SUCCEEDED, rec
    assert rec.result_names == ["field.vqp", "report.json"]  # no preview for 3D fields
    report = json.loads(svc.store.read_bytes(rec.results[1]))
    assert report["dims"] == 3 and report["eval_split"] == "test" and report["num_eval_views"] == 2
    assert report["psnr"] > 8 and report["history"][-1]["loss"] < report["history"][0]["loss"]
    data = svc.store.read_bytes(rec.results[0])
    model, extra = decode_field(data)
    lo, hi = extra["box"]
    assert all(h > l for l, h in zip(lo, hi, strict=True)) and extra["background"] == [1.0, 1.0, 1.0]
    assert extra["unbounded"] is False  # NeRF-synthetic photos: an object on a transparent background
    assert model.grid.support_level() == (1 if sparse else None)

    # Render at two of the photo cameras: the job's images equal rendering the decoded field here.
    with zipfile.ZipFile(svc.store.path(svc.archive_id)) as zf:
        meta = json.loads(zf.read("donut/transforms_train.json"))
    cams = []
    for fr in meta["frames"][:2]:
        c2w = np.asarray(fr["transform_matrix"])
        c2w[:3, 1:3] *= -1.0
        fx = 0.5 * VIEW / math.tan(0.5 * meta["camera_angle_x"])
        K = [fx, 0, VIEW / 2, 0, fx, VIEW / 2, 0, 0, 1]
        cams.append({"viewmat": np.linalg.inv(c2w).reshape(-1).tolist(), "K": K, "width": VIEW, "height": VIEW})
    r = svc.run(RenderFieldSpec(rec.results[0], cams_of(cams), (0.0, 0.0, 0.0), "float32"))
    assert r.state is JobState.SUCCEEDED and len(r.results) == 2, r
    box = SceneBox(tuple(lo), tuple(hi))
    for rid, cam in zip(r.results, cams, strict=True):
        want = render_field(
            model, camera_from_dict(cam), box=box, samples_per_ray=train["samples_per_ray"], background=(0, 0, 0)
        )
        got = np.load(svc.store.path(rid), allow_pickle=False)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
        assert 0.02 < float((got.max(-1) > 0.05).mean()) < 0.98  # the donut is in view, on black


def test_train_splats_job_on_a_tiny_archive(svc: Service) -> None:
    from vqpress_server.core.splats.formats import read_splats
    from vqpress_server.core.splats.quantize import decode_vqp_splats

    config = {
        "steps": 24,
        "init_num_points": 400,
        "checkpoint_every": 8,
        "qat": {  # Compact3D's codebooks inside the schedule: the .vqp has the .ply's Gaussians
            "mode": "compact3d",
            "start_step": 8,
            "freeze_step": 20,
            "reassign_every": 4,
            "prune_start": 10,
            "prune_stop": 20,
        },
    }
    rec = svc.run(TrainSplatsSpec(svc.archive_id, SplatTrainConfig.from_dict(config)))
    assert rec.state is JobState.SUCCEEDED, rec
    assert rec.result_names == ["scene.vqp", "scene.ply", "report.json"]
    vqp_id, ply_id, report_id = rec.results
    report = json.loads(svc.store.read_bytes(report_id))
    decoded = decode_vqp_splats(svc.store.read_bytes(vqp_id))
    assert decoded.num_gaussians == report["num_gaussians"] == read_splats(svc.store.path(ply_id)).num_gaussians
    assert report["ply_bytes"] == svc.store.stat(ply_id).size and rec.metrics["ratio"] > 1
    assert report["resumed_from_step"] is None
    assert not checkpoint_dir_for(svc.settings.scratch_dir, rec.id).exists()


# -- resume after a killed worker ----------------------------------------------------------
@pytest.mark.timeout(960)  # the job's own wait below is bounded at 900 s: a loaded machine trains slowly
def test_killed_worker_resumes_field_training_from_its_checkpoint(svc: Service) -> None:
    train = {**FAST, "steps": 1500, "log_every": 10}  # a checkpoint every 150 steps
    job = svc.table.submit_spec(train_field(svc.image_id, 2, {"grid": {"kind": "vqad", **GRID}, "decoder": DEC}, train))
    svc.pool.notify()
    ckpt = checkpoint_dir_for(svc.settings.scratch_dir, job.id) / "field.pt"
    deadline = time.monotonic() + 280  # the first checkpoint (150 steps); generous for a loaded machine
    while not ckpt.exists():
        assert time.monotonic() < deadline and not svc.table.get(job.id).terminal, svc.table.get(job.id)
        time.sleep(0.005)
    (pid,) = svc.pool.pids()
    os.kill(pid, signal.SIGKILL)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]  # the restarted worker needs seconds
    assert saved % 150 == 0 and 150 <= saved < 1500, saved
    rec = wait(svc.table, job.id, lambda r: r.terminal, 900)  # an event; the bound only stops a hang
    assert rec.state is JobState.SUCCEEDED and rec.attempts == 2, rec
    assert rec.metrics["resumed_from_step"] == saved
    report = json.loads(svc.store.read_bytes(rec.results[1]))
    assert report["resumed_from_step"] == saved and report["steps"] == 1500
    steps = [h["step"] for h in report["history"]]
    assert steps == list(range(10, 1501, 10))  # one history across both attempts, no step trained twice
    assert report["psnr"] > 26
    # The worker removes it right after recording the end (checkpoints must outlive a crash until then).
    gone_by = time.monotonic() + 60
    while ckpt.parent.exists() and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not ckpt.parent.exists()  # removed once the job ended
    assert pid not in svc.pool.pids()


# -- bad specs -------------------------------------------------------------------------------
def test_bad_configs_and_wrong_sources_fail_with_a_clear_message(svc: Service, dense_field: str) -> None:
    img, arc = svc.image_id, svc.archive_id
    bad_kind, bad_bits = {"grid": {"kind": "octree"}}, {"grid": {"bits": 11}}
    junk = svc.store.put_bytes(b"neither an image nor an archive", "notes.bin", "dataset").id
    # Refused where the spec is built (what the RPC layer does before anything is queued).
    refused: list[tuple[object, str]] = [
        (lambda: train_field(img, 2, train={"steps": 0}), "steps must be in [1, 1e7]"),
        (lambda: train_field(img, 2, train={"stepz": 10}), "unknown train field(s) ['stepz']"),
        (lambda: train_field(img, 2, train={"lr": "fast"}), "train.lr must be float"),
        (lambda: train_field(img, 2, bad_kind), "field.grid.kind must be one of"),
        (lambda: train_field(img, 2, bad_bits), "VQ-AD bits must be an integer in [1, 10]"),
        (lambda: train_field(img, 2, {"dims": 3}), "field.dims is 3 but the dataset is a single image"),
        (lambda: train_field(arc, 3, options={"downscale": 0}), "downscale must be an integer"),
        (lambda: SplatTrainConfig.from_dict({"steps": -5}), "steps"),
        (lambda: FieldQuantizeConfig.from_dict({"method": "pq"}), "field.method must be"),
        (lambda: FieldQuantizeConfig.from_dict({"method": "kmvq", "bits": 11}), "1..10"),
        (lambda: RenderFieldSpec(dense_field, ()), "cameras must be a non-empty list"),
        (
            lambda: spec_from_json({**train_field(img, 2).to_json(), "dataset": {"artifact": img}}),
            "dataset must be a string",
        ),
        (lambda: spec_from_json({**ExportFieldSpec(dense_field).to_json(), "format": "ply"}), "unknown key(s)"),
    ]
    for build, message in refused:
        with pytest.raises(VqpressInputError) as e:  # ConfigError or SpecError: INVALID_ARGUMENT at the call
            build()  # type: ignore[operator]
        assert message in str(e.value), (message, str(e.value))
    # Fail as jobs, the input's fault, with a message that names what is wrong.
    vqad = svc.run(train_field(img, 2, {"grid": {"kind": "vqad", **GRID}}, {**FAST, "steps": 2}))
    assert vqad.state is JobState.SUCCEEDED, vqad
    cases = [
        (train_field(junk, 3), "notes.bin"),
        (TrainSplatsSpec(img, SplatTrainConfig.from_dict({"steps": 5})), "not a zip or tar archive"),
        (QuantizeFieldSpec(svc.donut_id, FieldQuantizeConfig()), "donut.ply"),
        (QuantizeFieldSpec(dense_field, FieldQuantizeConfig(method="lra", rank=9)), "LRA rank"),
        (QuantizeFieldSpec(vqad.results[0], FieldQuantizeConfig()), "DenseGridConfig"),
    ]
    jobs = [svc.table.submit_spec(spec) for spec, _ in cases]
    svc.pool.notify()
    for job, (spec, message) in zip(jobs, cases, strict=True):
        rec = wait(svc.table, job.id, lambda r: r.terminal)
        assert rec.state is JobState.FAILED and rec.failure == "input", (spec, rec)
        assert message in rec.error, (message, rec.error)
        assert str(svc.settings.data_dir) not in rec.error and not rec.error.startswith("ConfigError"), rec.error
    assert svc.pool.pids()  # bad specs do not cost the worker
