"""Training and neural fields through the service: a real loopback server (build_app on port 0, a temp
data dir, one CPU worker process), driven through the SDK; plus the RPC layer's mirror of the
trainers' configs held equal to the real dataclasses."""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from vqpress import (
    Camera,
    Client,
    DenseGridConfig,
    FieldQuantizeConfig,
    FieldTrainConfig,
    JobState,
    QatConfig,
    QuantizeConfig,
    SplatTrainConfig,
    VqadGridConfig,
    VqpressError,
)
from vqpress.errors import translate_errors
from vqpress.field import decode_field, render_image_field
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.vqp import decode_splats, read_vqp

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut_small.ply"
ASTRONAUT = REPO / "tests" / "data" / "astronaut_crop128.png"
SIZE = 48  # pixels of the rendered training views
# A 128x128 VQ-AD image field small enough to fit in a few seconds on a CPU.
SMALL_GRID = {"levels": 3, "base_resolution": 8, "max_resolution": 64, "features": 8}

pytestmark = pytest.mark.timeout(150)


# -- the RPC layer's mirror of the trainers' configs ----------------------------------------------
MIRROR_CASES: list[dict[str, Any]] = [
    {},
    {"steps": 30},
    {"steps": 1},
    {"steps": 0},
    {"steps": 1_000_001},
    {"steps": 30, "qat": {"start_step": 5}},
    {"steps": 100, "qat": {"start_step": 200}},
    {"steps": 7, "refine_every": 0},
    {"qat": {"freeze_step": 10}},
    {"qat": {"enabled": False, "start_step": 40_000}},
    {"qat": {"dc_codebook": 70_000}},
    {"qat": {"kmeans_iters": 101}},
    {"qat": {"prune_stop": 10}},
    {"qat": {"opacity_reg": 1.0}},
    {"sh_degree": 4},
    {"ssim_lambda": 1.5},
    {"init_opacity": 1.0},
    {"means_lr": 0.0},
    {"cap_max": 0},
    {"init": "random", "init_num_points": 20_000_001},
]


@pytest.mark.parametrize("values", MIRROR_CASES, ids=[json.dumps(c) for c in MIRROR_CASES])
def test_the_rpc_layer_validates_splat_configs_without_torch(values: dict[str, Any]) -> None:
    """Train requests are checked at submit time with the trainer's own dataclass, and the gRPC process
    still never imports torch."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from vqpress_server.core.errors import ConfigError\n"
        "from vqpress_server.rpc import convert\n"
        "from vqpress_server.core.splats.train_config import SplatTrainConfig\n"
        "from vqpress_server.jobs.specs import TrainSplatsSpec\n"
        f"values = json.loads({json.dumps(json.dumps(values))})\n"
        "try:\n"
        "    out = TrainSplatsSpec('ab' * 32, SplatTrainConfig.from_dict(values)).config.as_dict()\n"
        "    print(json.dumps(out, sort_keys=True))\n"
        "except ConfigError as e:\n"
        "    print('refused', e)\n"
        "assert 'torch' not in sys.modules, 'the gRPC process imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from vqpress_server.core.errors import ConfigError
    from vqpress_server.core.splats.train import SplatTrainConfig as CoreConfig

    try:
        expected = json.dumps(CoreConfig.from_dict(values).as_dict(), sort_keys=True)
    except ConfigError:
        assert proc.stdout.startswith("refused"), proc.stdout
    else:
        assert proc.stdout.strip() == expected


def test_qat_mode_travels_from_the_sdk_to_the_trainers_config() -> None:
    from vqpress.client import _splat_train_pb
    from vqpress_server.core.errors import ConfigError
    from vqpress_server.core.splats.train_config import SplatTrainConfig as CoreSplatTrainConfig
    from vqpress_server.rpc import convert

    msg = _splat_train_pb(SplatTrainConfig(qat=QatConfig(mode="finetune", finetune_steps=500)))
    cfg = convert.splat_train_config(msg)
    assert cfg == CoreSplatTrainConfig.from_dict({"qat": {"mode": "finetune", "finetune_steps": 500}})
    assert cfg.qat.mode == "finetune" and cfg.qat.finetune_steps == 500
    with pytest.raises(VqpressError, match="mode"):
        QatConfig(mode="c3dgs").validate()
    bad = _splat_train_pb(SplatTrainConfig(qat=QatConfig(finetune_steps=0)))
    with pytest.raises(ConfigError, match="finetune_steps"):
        convert.splat_train_config(bad)


def test_config_mirrors_have_the_trainers_fields_defaults_and_bounds() -> None:
    from vqpress_server.core.data.dataset import DatasetConfig
    from vqpress_server.core.fields import config as fc
    from vqpress_server.core.splats import qat, train
    from vqpress_server.rpc import convert

    core = train.SplatTrainConfig()
    assert convert.splat_train_config(pb.SplatTrainConfig()) == core
    # The .proto and the SDK mirror the dataclasses field for field.
    names = lambda cls: {f.name for f in fields(cls)}  # noqa: E731
    proto = lambda msg: {f.name for f in msg.DESCRIPTOR.fields}  # noqa: E731
    dataset_options = {"downscale", "background", "test_every"}  # DatasetOptions, flat in the SDK's configs
    assert proto(pb.DatasetOptions) == dataset_options < names(DatasetConfig)
    assert proto(pb.SplatTrainConfig) == names(train.SplatTrainConfig) | {"dataset"}
    assert names(SplatTrainConfig) == names(train.SplatTrainConfig) | dataset_options
    assert proto(pb.SplatTrainConfig.QatConfig) == names(qat.QatConfig) == names(QatConfig)
    assert proto(pb.DenseGridConfig) == names(fc.DenseGridConfig)
    assert proto(pb.VqadGridConfig) == names(fc.VqadGridConfig)
    assert proto(pb.HashGridConfig) == names(fc.HashGridConfig)
    assert proto(pb.DecoderConfig) == names(fc.DecoderConfig)
    assert proto(pb.FieldTrainConfig) == names(fc.TrainConfig) | {"field", "dataset"}
    # The RPC layer builds the trainer's own DatasetConfig (one class, torch-free).
    assert convert.DatasetConfig is DatasetConfig


# -- the service ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), host="127.0.0.1", port=0, workers=1, poll_s=0.05)
    app = build_app(settings)
    app.start()
    try:
        with Client(f"127.0.0.1:{app.port}", timeout=30) as c:
            yield c
    finally:
        app.stop(0)


@pytest.fixture(scope="module")
def donut_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NeRF-synthetic archive of the donut rendered by the PyTorch twin: 8 train, 2 test views of 48x48."""
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.render.images import save_png
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import read_splats

    scene = read_splats(DONUT)
    cams = orbit_cameras(scene, n=10, width=SIZE, height=SIZE)
    root = tmp_path_factory.mktemp("donut")
    path = root / "donut.zip"
    angle = 2 * math.atan(0.5 * SIZE / float(cams[0].K[0, 0]))
    with zipfile.ZipFile(path, "w") as zf:
        for split, views in (("train", cams[:8]), ("test", cams[8:])):
            frames = []
            for i, cam in enumerate(views):
                c2w = np.linalg.inv(cam.viewmat)
                c2w[:3, 1:3] *= -1.0  # OpenCV -> OpenGL axes
                frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
                png = root / f"{split}_{i}.png"
                save_png(render(scene, cam, background=(1.0, 1.0, 1.0)), png)
                zf.write(png, f"donut/{split}/r_{i}.png")
            doc = {"camera_angle_x": angle, "frames": frames}
            zf.writestr(f"donut/transforms_{split}.json", json.dumps(doc))
    return path


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _photo() -> np.ndarray:  # [128, 128, 3] float in [0, 1]
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"), dtype=np.float64) / 255.0


def test_train_splats_reports_progress_and_delivers_a_decodable_scene(
    client: Client, donut_dataset: Path, tmp_path: Path
) -> None:
    qat = QatConfig(
        mode="compact3d", start_step=5, freeze_step=20, reassign_every=5, kmeans_iters=3,
        prune_start=10, prune_stop=25, prune_every=5,
        dc_codebook=64, sh_codebook=16, scale_codebook=64, rot_codebook=64,
    )  # fmt: skip
    config = SplatTrainConfig(steps=30, sh_degree=1, init="random", init_num_points=1000, seed=3, qat=qat)
    job = client.train(donut_dataset, config)
    seen = list(job.watch(timeout=120))
    final = seen[-1]
    assert final.state is JobState.SUCCEEDED, final.error
    assert final.kind == "train_splats"
    progress = [s.progress for s in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    steps = [s.metrics["step"] for s in seen if "step" in s.metrics]
    assert steps and max(steps) <= 30  # training metrics streamed while it ran
    assert [r.name for r in final.results] == ["scene.vqp", "scene.ply", "report.json"]

    paths = job.download_results(tmp_path)
    vqp = read_vqp(paths[0].read_bytes())
    assert vqp.kind == "splats"
    arrays = decode_splats(vqp)
    n = arrays["means"].shape[0]
    assert 0 < n <= 1000 and arrays["shN"].shape == (n, 3, 3)
    assert all(np.isfinite(a).all() for a in arrays.values())
    report = json.loads(paths[2].read_text())
    assert report["psnr"] > 10.0  # held-out views of the donut on white, after 30 steps
    assert final.metrics["psnr"] == pytest.approx(report["psnr"])


def test_train_splats_reads_the_photos_downscaled_when_asked(client: Client, donut_dataset: Path) -> None:
    config = SplatTrainConfig(steps=3, sh_degree=0, init="random", init_num_points=200, seed=1, downscale=2,
                              qat=QatConfig(enabled=False))  # fmt: skip
    job = client.train(donut_dataset, config)
    final = job.wait(timeout=600)
    report = json.loads(client.download_bytes(next(r for r in final.results if r.name == "report.json")))
    assert report["dataset"]["downscale"] == 2
    assert (report["dataset"]["width"], report["dataset"]["height"]) == (SIZE // 2, SIZE // 2)
    assert (report["dataset"]["train"], report["dataset"]["test"]) == (8, 2)


def test_train_image_field_reaches_a_psnr_floor_decoded_without_torch(client: Client, tmp_path: Path) -> None:
    config = FieldTrainConfig(grid=VqadGridConfig(bits=4, **SMALL_GRID), steps=100, batch_size=2048, seed=0)
    st = client.train(ASTRONAUT, config).wait(timeout=120)
    assert st.kind == "train_field"
    names = [r.name for r in st.results]
    assert names[:2] == ["field.vqp", "report.json"] and "preview.png" in names
    data = client.download_bytes(st.results[0])
    field = decode_field(data)
    assert field.grid["storage"] == "vq" and field.grid["bits"] == 4
    img = render_image_field(field, 128, 128)
    quality = _psnr(img, _photo())
    print(f"VQ-AD b=4 image field: {quality:.2f} dB, {len(data)} bytes")
    assert quality >= 25.0, quality  # measured 27.5 dB
    assert len(data) < 128 * 128  # under a third of the raw 8-bit pixels


def test_dense_field_is_quantized_post_hoc_and_rendered(client: Client, tmp_path: Path) -> None:
    config = FieldTrainConfig(grid=DenseGridConfig(**SMALL_GRID), steps=100, batch_size=2048, seed=0)
    trained = client.train(ASTRONAUT, config).wait(timeout=120)
    dense_ref = trained.results[0]
    dense = decode_field(client.download_bytes(dense_ref))
    assert dense.grid["storage"] == "table"
    dense_psnr = _psnr(render_image_field(dense, 128, 128), _photo())

    st = client.quantize(dense_ref, FieldQuantizeConfig(method="kmvq", bits=4, iters=5)).wait(timeout=120)
    q_bytes = client.download_bytes(st.results[0])
    q = decode_field(q_bytes)
    assert q.grid["storage"] == "vq" and q.grid["bits"] == 4
    assert len(q_bytes) < dense_ref.size / 2
    q_psnr = _psnr(render_image_field(q, 128, 128), _photo())
    print(f"dense field {dense_psnr:.2f} dB ({dense_ref.size} bytes), kmVQ b=4 {q_psnr:.2f} dB ({len(q_bytes)} bytes)")
    assert q_psnr >= 25.0 and q_psnr <= dense_psnr + 0.5, (dense_psnr, q_psnr)  # measured 31.4 -> 27.8 dB

    # Render: a 2D field is its image at each camera's size (the pose is ignored).
    cam = Camera(viewmat=np.eye(4), K=[[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]], width=128, height=128)
    (img,) = client.render(st.results[0], [cam], encoding="float32")
    np.testing.assert_allclose(img, render_image_field(q, 128, 128), atol=2e-3)
    small = Camera(viewmat=np.eye(4), K=[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]], width=64, height=32)
    (png,) = client.render(st.results[0], [small])
    assert png.shape == (32, 64, 3)

    # Export: a field re-encodes to .vqp only.
    exported = client.export(st.results[0], "vqp").wait(timeout=60)
    assert decode_field(client.download_bytes(exported.results[0])).grid["storage"] == "vq"
    with pytest.raises(VqpressError) as e:
        client.export(st.results[0], "ply")
    assert e.value.code == "INVALID_ARGUMENT" and "vqp" in e.value.message.lower()
    # A compressed field cannot be compressed again post hoc; a splat scene takes no field config.
    with pytest.raises(VqpressError) as e:
        client.quantize(st.results[0], FieldQuantizeConfig(bits=2))
    assert e.value.code == "FAILED_PRECONDITION" and "dense grid" in e.value.message
    with pytest.raises(VqpressError) as e:
        client.quantize(DONUT, FieldQuantizeConfig(bits=2))
    assert e.value.code == "INVALID_ARGUMENT" and "field_config" in e.value.message
    # Out-of-range options are refused at the call, naming the field, before any job is queued.
    before = len(client.jobs())
    for bad, name in ((FieldQuantizeConfig(bits=11), "bits"), (FieldQuantizeConfig(iters=0), "iters"),
                      (FieldQuantizeConfig(method="lra", rank=SMALL_GRID["features"] + 1), "rank")):  # fmt: skip
        with pytest.raises(VqpressError) as e:
            client.quantize(dense_ref, bad)
        assert e.value.code == "INVALID_ARGUMENT" and f"FieldQuantizeConfig.{name}" in e.value.message, e.value
    assert len(client.jobs()) == before


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (SplatTrainConfig(steps=0), "steps"),
        (SplatTrainConfig(steps=100, qat=QatConfig(mode="compact3d", start_step=200)), "start_step"),
        (SplatTrainConfig(qat=QatConfig(dc_codebook=1 << 20)), "dc_codebook"),
        (FieldTrainConfig(steps=0), "steps"),
        (FieldTrainConfig(grid=VqadGridConfig(bits=11)), "bits"),
        (FieldTrainConfig(grid=DenseGridConfig(levels=17)), "levels"),
        (FieldTrainConfig(lr=0.0), "learning rate"),
        (FieldTrainConfig(downscale=0), "downscale"),
        (SplatTrainConfig(downscale=65), "downscale"),
    ],
)
def test_bad_train_configs_are_invalid_argument(
    client: Client, donut_dataset: Path, config: SplatTrainConfig | FieldTrainConfig, match: str
) -> None:
    dataset = donut_dataset if isinstance(config, SplatTrainConfig) else ASTRONAUT
    with pytest.raises(VqpressError) as e:
        client.train(dataset, config)
    assert e.value.code == "INVALID_ARGUMENT" and match in e.value.message, e.value


def test_unknown_field_quantize_method_is_invalid_argument(client: Client) -> None:
    with pytest.raises(VqpressError) as e:
        client.quantize(DONUT, FieldQuantizeConfig(method="pca"))
    assert e.value.code == "INVALID_ARGUMENT" and "kmvq" in e.value.message


def test_a_dataset_that_is_no_archive_is_refused_with_a_reason(client: Client, tmp_path: Path) -> None:
    notes = tmp_path / "photos.zip"
    notes.write_text("these are not photos\n" * 50)
    with pytest.raises(VqpressError) as e:
        client.train(notes, SplatTrainConfig(steps=10))
    assert e.value.code == "INVALID_ARGUMENT" and "neither a zip nor a tar" in e.value.message
    with pytest.raises(VqpressError) as e:  # a photo trains a field, not a splat scene
        client.train(ASTRONAUT, SplatTrainConfig(steps=10))
    assert e.value.code == "INVALID_ARGUMENT" and "image" in e.value.message
    with pytest.raises(VqpressError) as e:  # a scene is not a dataset
        client.train(DONUT, FieldTrainConfig(steps=10))
    assert e.value.code == "FAILED_PRECONDITION" and "not a training dataset" in e.value.message


# -- quantize, then fine-tune on the photos -----------------------------------------------------
SMALL_QUANTIZE = QuantizeConfig(
    dc_codebook=32, sh_codebook=16, scale_codebook=32, rot_codebook=32, kmeans_iters=3, importance="none"
)  # no importance renders: the fine-tune's own photos are the slow part on a CPU


@pytest.mark.timeout(600)  # 20 training steps and two scorings on photos, on a loaded 2-core CPU
def test_quantize_with_a_dataset_finetunes_the_quantized_scene_on_its_photos(
    client: Client, donut_dataset: Path, tmp_path: Path
) -> None:
    """Small codebooks lose detail; 20 steps through the quantized scene win part of it back on the
    held-out photos (on CPU, through the service: the same archive Train takes)."""
    st = client.quantize(DONUT, SMALL_QUANTIZE, dataset=donut_dataset, finetune_steps=20).wait(timeout=560)
    assert st.state is JobState.SUCCEEDED, st.error
    assert st.kind == "quantize" and [r.name for r in st.results] == ["donut_small.vqp", "report.json"]
    data = client.download_bytes(st.results[0])
    report = json.loads(client.download_bytes(st.results[1]))
    ft = report["finetune"]
    print(f"fine-tune 20 steps: {ft['psnr_before']:.2f} -> {report['psnr']:.2f} dB on {report['psnr_reference']}")
    assert ft["steps"] == 20 and ft["eval_split"] == "test" and ft["num_eval_views"] == 2
    assert report["psnr"] > ft["psnr_before"], report  # the fine-tune helped on photos it did not see
    assert st.metrics["psnr"] == pytest.approx(report["psnr"]) and report["psnr_reference"].startswith("the dataset")
    assert report["output_bytes"] == len(data) == st.metrics["output_bytes"]
    assert report["ratio"] == pytest.approx(DONUT.stat().st_size / len(data))
    assert sum(report["section_bytes"].values()) <= len(data)
    arrays = decode_splats(read_vqp(data))  # the fine-tuned file decodes without torch
    assert arrays["means"].shape[0] == report["num_gaussians"]
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_quantize_dataset_is_refused_where_it_does_not_apply(client: Client, donut_dataset: Path) -> None:
    with pytest.raises(VqpressError) as e:  # a scene is not a dataset
        client.quantize(DONUT, SMALL_QUANTIZE, dataset=DONUT)
    assert e.value.code == "FAILED_PRECONDITION" and "not a training dataset" in e.value.message, e.value
    with pytest.raises(VqpressError) as e:  # out of bounds: refused before anything is sent
        client.quantize(DONUT, SMALL_QUANTIZE, dataset=donut_dataset, finetune_steps=0)
    assert e.value.code == "INVALID_ARGUMENT" and "finetune_steps" in e.value.message, e.value
    with pytest.raises(VqpressError) as e:
        client.quantize(DONUT, SMALL_QUANTIZE, finetune_steps=10)
    assert e.value.code == "INVALID_ARGUMENT" and "needs a dataset" in e.value.message, e.value
    # The server bounds the steps too (a request built without the SDK).
    scene = client.upload(DONUT)
    archive = client.upload(donut_dataset)
    req = pb.QuantizeRequest(
        artifact=pb.ArtifactRef(id=scene.id),
        finetune=pb.QuantizeFinetune(dataset=pb.ArtifactRef(id=archive.id), steps=100_001),
    )
    with pytest.raises(VqpressError) as e:
        with translate_errors():
            client._stub.Quantize(req, timeout=30)
    assert e.value.code == "INVALID_ARGUMENT" and "finetune.steps must be an integer in 1..100000" in e.value.message
    with pytest.raises(VqpressError) as e:  # no dataset in the fine-tune
        with translate_errors():
            client._stub.Quantize(pb.QuantizeRequest(artifact=pb.ArtifactRef(id=scene.id), finetune={}), timeout=30)
    assert e.value.code == "INVALID_ARGUMENT" and "finetune.dataset is not set" in e.value.message
