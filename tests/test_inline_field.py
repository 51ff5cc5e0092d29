"""Neural fields sent inline (config + state-dict tensors) through a real loopback server: they
render and export exactly as the same field stored as a .vqp, and bad tensors are INVALID_ARGUMENT
naming the tensor, with the server still serving after each. Plus the core builder on its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import vqpress
from test_service_e2e import Service, service  # noqa: F401  (the loopback server fixture)
from vqpress import ArtifactRef, Camera, VqpressError, digests
from vqpress.types import DecoderConfig, DenseGridConfig, NeuralField, VqadGridConfig
from vqpress.vqp import read_vqp
from vqpress_server.core.errors import ConfigError, NonFiniteError, VqpressInputError
from vqpress_server.core.fields.config import FieldConfig, TrainConfig, field_config_from_dict
from vqpress_server.core.fields.config import VqadGridConfig as CoreVqad
from vqpress_server.core.fields.inline import MAX_FIELD_BYTES, field_from_tensors
from vqpress_server.core.fields.model import NeuralField as CoreField
from vqpress_server.core.fields.serialize import decode_field, encode_field
from vqpress_server.core.fields.train import fit_image

pytestmark = pytest.mark.timeout(120)

H, W = 12, 16  # pixels of the tiny training image and of the rendered views
GRID = {"levels": 2, "base_resolution": 4, "max_resolution": 8, "features": 4, "bits": 3}
DECODER = {"hidden": 16, "layers": 1}


@dataclass(frozen=True)
class Trained:
    model: CoreField  # the trained 2D field (a VQ-AD training grid)
    state: dict[str, np.ndarray]  # its state dict as numpy
    camera: Camera  # a W x H view (a 2D field ignores the pose)

    def inline(self, tensors: dict[str, np.ndarray] | None = None) -> NeuralField:
        return NeuralField(
            self.state if tensors is None else tensors, grid=VqadGridConfig(**GRID), decoder=DecoderConfig(**DECODER)
        )


@pytest.fixture(scope="module")
def trained() -> Trained:
    rng = np.random.default_rng(0)
    image = np.clip(np.linspace(0, 1, H * W * 3).reshape(H, W, 3) + 0.1 * rng.random((H, W, 3)), 0, 1)
    cfg = field_config_from_dict({"dims": 2, "grid": {"kind": "vqad", **GRID}, "decoder": DECODER})
    res = fit_image(image.astype(np.float32), cfg, TrainConfig(steps=30, batch_size=128, log_every=10))
    state = {k: v.detach().cpu().numpy() for k, v in res.field.state_dict().items()}
    cam = Camera(viewmat=np.eye(4), K=np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1.0]]), width=W, height=H)
    return Trained(res.field.eval(), state, cam)


def render(svc: Service, source: object, cam: Camera) -> np.ndarray:  # [H, W, 3] float32
    (img,) = svc.client.render(source, [cam], encoding="float32")  # type: ignore[arg-type]
    return img


# -- through the service -------------------------------------------------------------------


def test_inline_field_is_stored_renders_and_exports_as_the_stored_field(service: Service, trained: Trained) -> None:  # noqa: F811
    got = render(service, trained.inline(), trained.camera)
    # The server stored exactly what encode_field writes for this field (the store is content-addressed).
    data = encode_field(trained.model)
    assert service.client.stat(ArtifactRef(digests.id_of_bytes(data))).kind == "vqp"

    # The same field as a training job stores it (its image size in the manifest): another artifact.
    stored = service.client.upload_bytes(encode_field(trained.model, {"height": H, "width": W}), "field.vqp", "vqp")
    assert stored.id != digests.id_of_bytes(data)
    want = render(service, stored.ref, trained.camera)
    assert got.shape == (H, W, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # ... which is the decoded field evaluated in this process, and close to the trained one (fp16 storage).
    decoded, _ = decode_field(data)
    np.testing.assert_allclose(got, decoded.image_pixels(H, W).numpy(), atol=1e-6, rtol=0)
    assert np.abs(got - trained.model.image_pixels(H, W).numpy()).max() < 2e-2

    exports = []
    for source in (trained.inline(), stored.ref):
        st = service.client.export(source, "vqp").wait(timeout=60)  # type: ignore[arg-type]
        assert st.state == vqpress.JobState.SUCCEEDED, st.error
        exports.append(read_vqp(service.client.download_bytes(st.results[0])))
    a, b = exports
    assert a.kind == b.kind == "field"
    a.manifest.pop("extra"), b.manifest.pop("extra")  # the stored field carries its image size
    assert a.manifest == b.manifest
    assert a.sections.keys() == b.sections.keys()
    for name in a.sections:
        np.testing.assert_array_equal(a.sections[name], b.sections[name], err_msg=name)


def test_inline_dense_field_quantizes_post_hoc(service: Service) -> None:  # noqa: F811
    grid = {"levels": 2, "base_resolution": 4, "max_resolution": 8, "features": 4}
    cfg = field_config_from_dict({"dims": 2, "grid": {"kind": "dense", **grid}, "decoder": DECODER})
    state = {k: v.numpy() for k, v in CoreField(cfg, seed=1).state_dict().items()}
    inline = NeuralField(state, grid=DenseGridConfig(**grid), decoder=DecoderConfig(**DECODER))
    st = service.client.quantize(inline, vqpress.FieldQuantizeConfig(bits=2, iters=2)).wait(timeout=60)
    assert st.state == vqpress.JobState.SUCCEEDED, st.error
    out = read_vqp(service.client.download_bytes(st.results[0]))
    assert out.manifest["grid"]["storage"] == "vq" and out.manifest["grid"]["bits"] == 2


def _drop(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in s.items() if k != "mlp.0.bias"}


def _extra(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**s, "mlp.9.weight": np.zeros((3, 16), np.float32)}


def _reshaped(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**s, "grid.codebooks.1": np.zeros((8, 5), np.float32)}


def _nan(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    bad = s["grid.codebooks.0"].copy()
    bad[2, 1] = np.nan
    return {**s, "grid.codebooks.0": bad}


def _integers(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**s, "mlp.2.weight": s["mlp.2.weight"].astype(np.int32)}


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (_drop, ["missing", "mlp.0.bias"]),
        (_extra, ["unknown", "mlp.9.weight"]),
        (_reshaped, ["grid.codebooks.1", "[8, 5]", "[8, 4]"]),
        (_nan, ["grid.codebooks.0", "non-finite"]),
        (_integers, ["mlp.2.weight", "float"]),
    ],
    ids=["missing", "extra", "shape", "nan", "dtype"],
)
def test_bad_inline_tensors_are_invalid_argument_naming_the_tensor(
    service: Service,  # noqa: F811
    trained: Trained,
    mutate: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    words: list[str],
) -> None:
    with pytest.raises(VqpressError) as e:
        render(service, trained.inline(mutate(trained.state)), trained.camera)
    assert e.value.code == "INVALID_ARGUMENT", e.value
    for w in words:
        assert w in e.value.message, e.value.message
    # Still serving, inline fields included.
    assert render(service, trained.inline(), trained.camera).shape == (H, W, 3)


def test_bad_inline_config_is_invalid_argument(service: Service, trained: Trained) -> None:  # noqa: F811
    bad = NeuralField(trained.state, grid=VqadGridConfig(**{**GRID, "features": 6}), decoder=DecoderConfig(**DECODER))
    with pytest.raises(VqpressError) as e:
        service.client.export(bad, "vqp")
    assert e.value.code == "INVALID_ARGUMENT" and "grid.codebooks.0" in e.value.message, e.value


def test_client_refuses_unsendable_arrays_before_sending(trained: Trained) -> None:
    with pytest.raises(VqpressError, match="complex64"):
        trained.inline({**trained.state, "mlp.0.bias": np.zeros(16, np.complex64)})
    with pytest.raises(VqpressError, match="non-empty"):
        NeuralField({})


# -- the core builder -------------------------------------------------------------------------


def _state(model: CoreField) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_a_sparse_radiance_field_round_trips_with_its_allocation() -> None:
    grid = {"kind": "vqad", "levels": 3, "base_resolution": 8, "max_resolution": 40, "sparse": True, "bits": 2}
    spec = {"grid": grid, "decoder": {"hidden": 16}}
    model = CoreField(field_config_from_dict({"dims": 3, **spec}), seed=2)
    occupied = torch.zeros(16, 16, 16, dtype=torch.bool)
    occupied[4:9, 5:8, 6:10] = True
    model.grid.allocate(occupied)
    state = _state(model)
    assert 0 < state["grid.logits.2"].shape[0] < 40**3  # only the allocated vertices
    built = field_from_tensors(spec, state)
    assert built.config.dims == 3 and not built.training
    assert encode_field(built) == encode_field(model)

    rows = state["grid.rows_2"].copy()
    rows[rows >= 0] = 0  # not an allocation
    with pytest.raises(VqpressInputError, match="sparse level 2"):
        field_from_tensors(spec, {**state, "grid.rows_2": rows})
    with pytest.raises(VqpressInputError, match="grid.rows_2"):
        field_from_tensors(spec, {**state, "grid.rows_2": rows.astype(np.int64) + 2**40})  # beyond int32


def test_core_refuses_absurd_sizes_and_mismatched_dims_before_allocating() -> None:
    state = _state(CoreField(FieldConfig(dims=2, grid=CoreVqad(levels=2, max_resolution=16))))
    huge = {"kind": "dense", "levels": 16, "base_resolution": 64, "max_resolution": 4096, "features": 64}
    with pytest.raises(ConfigError, match="GiB"):
        field_from_tensors({"grid": huge, "decoder": {}}, state)
    big = np.broadcast_to(np.float32(0), (MAX_FIELD_BYTES // 4 + 1,))  # 1 GiB of data that is not there
    with pytest.raises(VqpressInputError, match="bytes"):
        field_from_tensors({"grid": {"levels": 2, "max_resolution": 16}}, {**state, "grid.codebooks.0": big})
    with pytest.raises(ConfigError, match="dims"):
        field_from_tensors({"dims": 3, "grid": {"levels": 2, "max_resolution": 16}}, state)
    inf = {**state, "mlp.0.weight": np.full(state["mlp.0.weight"].shape, 1e300)}  # float64 beyond float32
    with pytest.raises(NonFiniteError, match="mlp.0.weight"):
        field_from_tensors({"grid": {"levels": 2, "max_resolution": 16}}, inf)
