"""Job specs: each round-trips through the job table's JSON unchanged, a stored spec that is not
what its class allows is refused naming the key, and every spec type has its handler. Plus the
typed field manifest and its strict parser."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from vqpress_server.core.data.config import DatasetConfig
from vqpress_server.core.errors import FormatError, LimitExceeded, VqpressInputError
from vqpress_server.core.fields.config import FieldQuantizeConfig, field_config_from_spec, train_config_from_spec
from vqpress_server.core.fields.manifest import FieldExtra
from vqpress_server.core.splats.quantize_config import QuantizeConfig
from vqpress_server.core.splats.train_config import SplatTrainConfig
from vqpress_server.jobs.model import JobKind
from vqpress_server.jobs.specs import (
    SPEC_TYPES,
    BuildFieldSpec,
    CameraSpec,
    ExportFieldSpec,
    ExportOptions,
    ExportSplatsSpec,
    FinetuneSpec,
    JobSpec,
    QuantizeFieldSpec,
    QuantizeSplatsSpec,
    RenderFieldSpec,
    RenderSplatsSpec,
    SpecError,
    TrainFieldSpec,
    TrainSplatsSpec,
    spec_from_json,
)

A, B = "a" * 64, "b" * 64
CAM = CameraSpec(
    viewmat=(1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 4.0, 0.0, 0.0, 0.0, 1.0),
    K=(32.0, 0.0, 16.0, 0.0, 32.0, 12.0, 0.0, 0.0, 1.0),
    width=32,
    height=24,
    name="front",
)
SPECS: list[JobSpec] = [
    QuantizeSplatsSpec(A),
    QuantizeSplatsSpec(A, QuantizeConfig.from_preset("high_ratio", dc_codebook=64), (CAM,), (1.0, 1.0, 1.0), False),
    QuantizeSplatsSpec(A, finetune=FinetuneSpec(B, 40)),
    QuantizeFieldSpec(A, FieldQuantizeConfig(method="lra", rank=2), (CAM, CAM), (0.0, 0.5, 1.0)),
    ExportSplatsSpec(A, "vqp", QuantizeConfig(kmeans_iters=0)),
    ExportSplatsSpec(A, "spz", options=ExportOptions(sh_degree=1, box_min=(-1.0, -1.0, -1.0), box_max=(1.0, 1.0, 1.0))),
    ExportFieldSpec(A),
    RenderSplatsSpec(A, (CAM,), (0.2, 0.2, 0.2), "float32"),
    RenderFieldSpec(A, (CAM,)),
    TrainSplatsSpec(A, SplatTrainConfig.from_dict({"steps": 100, "qat": {"mode": "compact3d"}}), init=B),
    TrainFieldSpec(
        A,
        field_config_from_spec({"grid": {"kind": "hash"}}, 3, radiance_defaults=True),
        train_config_from_spec({"steps": 30}, 3),
        DatasetConfig(downscale=2, test_every=3),
    ),
    BuildFieldSpec(A, {"grid": {"kind": "vqad", "bits": 3}, "decoder": {}}),
]


def test_every_spec_type_is_listed_and_round_trips_through_json() -> None:
    assert {type(s) for s in SPECS} == set(SPEC_TYPES)
    assert len({cls.TYPE for cls in SPEC_TYPES}) == len(SPEC_TYPES)
    for spec in SPECS:
        stored = json.loads(json.dumps(spec.to_json(), allow_nan=False))  # what the job table keeps
        assert stored["type"] == spec.TYPE
        back = spec_from_json(stored, spec.KIND)
        assert type(back) is type(spec) and back == spec, spec.TYPE
        assert back.to_json() == spec.to_json()


def test_every_spec_type_has_its_handler() -> None:
    from vqpress_server.jobs.handlers import HANDLERS

    assert set(HANDLERS) == set(SPEC_TYPES)


def test_a_stored_spec_that_is_not_its_class_is_refused_naming_the_key() -> None:
    good = QuantizeSplatsSpec(A, cameras=(CAM,)).to_json()
    bad_cases = [
        ({**good, "colour": 1}, "unknown key(s) ['colour']"),
        ({k: v for k, v in good.items() if k != "evaluate"}, "lacks evaluate"),
        ({**good, "evaluate": "yes"}, "evaluate must be true or false"),
        ({**good, "source": 7}, "source must be a string"),
        ({**good, "config": {**good["config"], "dc_codebook": "many"}}, "dc_codebook"),
        ({**good, "config": {**good["config"], "no_such_field": 1}}, "no_such_field"),
        ({**good, "cameras": [{**CAM.to_json(), "width": 1.5}]}, "cameras[0].width must be an integer"),
        ({**good, "cameras": [{**CAM.to_json(), "K": [1.0] * 8}]}, "cameras[0].K must be a list of 9 numbers"),
        ({**good, "background": [0, 0]}, "background must be a list of 3 numbers"),
        ({**good, "finetune": {"dataset": B, "steps": 0}}, "finetune.steps must be an integer in 1..100000"),
        ({**good, "finetune": {"dataset": B}}, "finetune lacks steps"),
        ({**good, "type": "quantize_everything"}, "unknown job spec type"),
        ({"source": A}, 'names its "type"'),
        ([1, 2], "must be a JSON object"),
    ]
    for doc, message in bad_cases:
        with pytest.raises(SpecError) as e:
            spec_from_json(doc)
        assert message in str(e.value), (message, str(e.value))
    with pytest.raises(SpecError, match="runs as a quantize job, not render"):
        spec_from_json(good, JobKind.RENDER)
    export = ExportSplatsSpec(A, "ply", options=ExportOptions()).to_json()
    with pytest.raises(SpecError, match="format must be one of"):
        spec_from_json({**export, "format": "obj"})
    with pytest.raises(SpecError, match="options has unknown key"):
        spec_from_json({**export, "options": {**export["options"], "gzip": True}})
    train = SPECS[10].to_json()
    with pytest.raises(SpecError, match="train lacks"):
        spec_from_json({**train, "train": {"steps": 10}})
    with pytest.raises(SpecError, match="dataset_options: downscale"):
        spec_from_json({**train, "dataset_options": {**train["dataset_options"], "downscale": 0}})


def test_building_a_spec_validates_it() -> None:
    with pytest.raises(SpecError, match="cameras must be a non-empty list"):
        RenderSplatsSpec(A, ())
    with pytest.raises(SpecError, match="viewmat's last row"):
        replace(CAM, viewmat=(1.0,) * 16)
    with pytest.raises(SpecError, match="width and height must be 1..8192"):
        replace(CAM, width=0)
    with pytest.raises(SpecError, match="background must be 3 numbers"):
        RenderSplatsSpec(A, (CAM,), (0.0, 2.0, 0.0))
    with pytest.raises(SpecError, match="encoding must be one of"):
        RenderFieldSpec(A, (CAM,), encoding="jpeg")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="box_min"):
        ExportOptions(box_min=(0.0, 0.0, 0.0))
    with pytest.raises(LimitExceeded, match="max_request_pixels"):
        big = replace(CAM, width=8192, height=8192)
        RenderSplatsSpec(A, (big,) * 17)
    assert issubclass(SpecError, VqpressInputError)  # a worker records it as the input's fault


def test_field_extra_writes_the_keys_in_the_order_of_the_manifest_and_parses_strictly() -> None:
    image = FieldExtra(height=12, width=16)
    assert list(replace(image, scored=True, psnr=30.5, ssim=None).to_json()) == ["height", "width", "psnr", "ssim"]
    scene = FieldExtra(
        box=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), unbounded=False, background=(1.0, 1.0, 1.0), samples_per_ray=24
    )
    scored = replace(scene, scored=True, psnr=20.0, ssim=0.8)
    assert list(scored.to_json()) == ["box", "unbounded", "background", "samples_per_ray", "psnr", "ssim"]
    assert list(scored.compressed("kmvq b=4").to_json())[-2:] == ["posthoc", "source_psnr"]
    assert scored.compressed("lra r=2").source_psnr == 20.0 and "psnr" not in scored.compressed("x").to_json()
    for extra in (FieldExtra(), image, scored, scored.compressed("kmvq b=4"), replace(scene, march_steps=512)):
        assert FieldExtra.from_json(json.loads(json.dumps(extra.to_json()))) == extra
    assert FieldExtra().samples == 64 and scene.samples == 24
    for doc, message in (
        ({"hieght": 3}, "unknown key(s) ['hieght']"),
        ({"height": "12"}, "extra.height must be an integer"),
        ({"box": [[0, 0, 0]]}, "extra.box must be [lo, hi]"),
        ({"box": [[1, 1, 1], [0, 0, 0]]}, "lo <= hi"),
        ({"background": [0, 0, 2]}, "extra.background must be 3 finite numbers in [0, 1]"),
        ({"unbounded": 1}, "extra.unbounded must be true or false"),
        ({"psnr": "high"}, "extra.psnr must be a finite number"),
    ):
        with pytest.raises(FormatError) as e:
            FieldExtra.from_json(doc, "field.vqp")
        assert message in str(e.value) and "field.vqp" in str(e.value), (message, str(e.value))
