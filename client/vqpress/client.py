"""The vqpress SDK: ``Client`` talks to the service, ``Job`` follows the work it started.

Everything at this surface is numpy and dataclasses (``vqpress.types``); protobuf messages are built
and read in this module only, and every ``grpc.RpcError`` becomes a ``VqpressError`` in one place
(``errors.translate_errors``).
"""

from __future__ import annotations

import io
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import grpc
import numpy as np

from . import _transport, _wire, digests
from .errors import (
    JobCancelled,
    JobFailed,
    JobTimeout,
    VqpressError,
    from_rpc_error,
    invalid,
    require,
    translate_errors,
)
from .png import decode_png, to_rgb
from .types import (
    ArtifactInfo,
    ArtifactRef,
    Background,
    Camera,
    DecoderConfig,
    DenseGridConfig,
    ExportOptions,
    FieldQuantizeConfig,
    FieldTrainConfig,
    GridConfig,
    HashGridConfig,
    JobState,
    JobStatus,
    NeuralField,
    QuantizeConfig,
    ServerInfo,
    Splats,
    SplatTrainConfig,
    VqadGridConfig,
    set_fields,
)
from .v1 import vqpress_pb2 as pb
from .v1 import vqpress_pb2_grpc as pb_grpc

# a file to upload, a stored artifact, or inline tensors (a scene or a neural field)
Source = str | os.PathLike | ArtifactRef | Splats | NeuralField
ExportFormatName = Literal["ply", "compressed_ply", "splat", "spz", "sog", "vqp"]
Encoding = Literal["png", "float32", "raw"]

# Inline splats above this size are uploaded as an .npz artifact instead (a message is at most 64 MiB).
INLINE_SPLATS_MAX_BYTES = _transport.MAX_MESSAGE_BYTES - (4 << 20)
INLINE_FIELD_MAX_BYTES = INLINE_SPLATS_MAX_BYTES  # larger inline fields are refused: send a .vqp

_KIND_BY_SUFFIX = {
    ".ply": "ply",
    ".splat": "splat",
    ".spz": "spz",
    ".npz": "npz",
    ".vqp": "vqp",
    ".json": "json",
    ".png": "png",
    ".npy": "npy",
    ".zip": "dataset",
    ".tar": "dataset",
    ".tgz": "dataset",
    ".jpg": "jpg",
    ".jpeg": "jpg",
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ENUMS: dict[str, dict[str, int]] = {
    "init": {
        "auto": pb.SPLAT_INIT_AUTO,
        "points": pb.SPLAT_INIT_POINTS,
        "random": pb.SPLAT_INIT_RANDOM,
        "object": pb.SPLAT_INIT_OBJECT,
        "camera_spread": pb.SPLAT_INIT_CAMERA_SPREAD,
    },
    "schedule": {"full": pb.TRAIN_SCHEDULE_FULL, "fast": pb.TRAIN_SCHEDULE_FAST},
    "mode": {"compact3d": pb.QAT_MODE_COMPACT3D, "finetune": pb.QAT_MODE_FINETUNE},
    "strategy": {
        "default": pb.DENSIFY_STRATEGY_DEFAULT,
        "mcmc": pb.DENSIFY_STRATEGY_MCMC,
        "none": pb.DENSIFY_STRATEGY_NONE,
    },
    "combine": {"sum": pb.GRID_COMBINE_SUM, "concat": pb.GRID_COMBINE_CONCAT},
    "forward": {"soft": pb.VQAD_FORWARD_SOFT, "hard": pb.VQAD_FORWARD_HARD},
    "method": {"kmvq": pb.FIELD_QUANTIZE_METHOD_KMVQ, "lra": pb.FIELD_QUANTIZE_METHOD_LRA},
}
_DATASET_OPTIONS = ("downscale", "background", "test_every")  # DatasetOptions of both trainers
_PRECISION = {
    "fp32": pb.PRECISION_FP32,
    "fp16": pb.PRECISION_FP16,
    "fixed16": pb.PRECISION_FIXED16,
    "uint8": pb.PRECISION_UINT8,
}
_ENTROPY = {"zstd": pb.ENTROPY_ZSTD, "none": pb.ENTROPY_NONE}
_EXPORT = {
    "ply": pb.EXPORT_FORMAT_PLY,
    "splat": pb.EXPORT_FORMAT_SPLAT,
    "spz": pb.EXPORT_FORMAT_SPZ,
    "vqp": pb.EXPORT_FORMAT_VQP,
    "sog": pb.EXPORT_FORMAT_SOG,
    "compressed_ply": pb.EXPORT_FORMAT_COMPRESSED_PLY,
}
_STATE_FROM_PB = {
    pb.JOB_STATE_QUEUED: JobState.QUEUED,
    pb.JOB_STATE_RUNNING: JobState.RUNNING,
    pb.JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
    pb.JOB_STATE_FAILED: JobState.FAILED,
    pb.JOB_STATE_CANCELLING: JobState.CANCELLING,
    pb.JOB_STATE_CANCELLED: JobState.CANCELLED,
}
_STATE_TO_PB = {v: k for k, v in _STATE_FROM_PB.items()}
_KIND_FROM_PB = {
    pb.JOB_KIND_QUANTIZE: "quantize",
    pb.JOB_KIND_EXPORT: "export",
    pb.JOB_KIND_RENDER: "render",
    pb.JOB_KIND_TRAIN_SPLATS: "train_splats",
    pb.JOB_KIND_TRAIN_FIELD: "train_field",
    pb.JOB_KIND_BUILD_FIELD: "build_field",
}
_PIPELINE_DEPTH = 8  # downloaded chunks in flight between the receiving and the hashing thread
_RETRY_WAIT_S = (0.25, 5.0)  # first and longest pause before re-attaching to a job after the server went away (s)
# Codes on which a wait re-attaches instead of failing: the server restarted, or the stream broke.
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED)


MAX_FINETUNE_STEPS = 100_000  # steps of a quantize job's fine-tune (the server's bound)


def guess_kind(path: str | os.PathLike) -> str:
    """Artifact kind from a file name ("" when unknown; the server then detects it from the bytes)."""
    return _KIND_BY_SUFFIX.get(Path(path).suffix.lower(), "")


# -- protobuf conversion (the only place messages are built or read) ---------------------


def _tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(data=a.tobytes(), shape=list(a.shape), dtype=pb.DTYPE_FLOAT32)


def _splats_pb(s: Splats) -> pb.GaussianSplats:
    return pb.GaussianSplats(
        means=_tensor(s.means),
        quats=_tensor(s.quats),
        scales=_tensor(s.scales),
        opacities=_tensor(s.opacities),
        sh0=_tensor(s.sh0),
        shN=_tensor(s.shN),
        sh_degree=s.sh_degree,
    )


_PB_DTYPES = {
    "float16": pb.DTYPE_FLOAT16,
    "float32": pb.DTYPE_FLOAT32,
    "float64": pb.DTYPE_FLOAT64,
    "uint8": pb.DTYPE_UINT8,
    "int32": pb.DTYPE_INT32,
    "int64": pb.DTYPE_INT64,
}


def _any_tensor(a: np.ndarray) -> pb.Tensor:
    """A Tensor of the array's own dtype (little-endian; bool as uint8 0/1)."""
    a = np.ascontiguousarray(a, dtype=np.uint8 if a.dtype == np.bool_ else None)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return pb.Tensor(data=a.tobytes(), shape=list(a.shape), dtype=_PB_DTYPES[a.dtype.name])


def _field_pb(f: NeuralField) -> pb.NeuralField:
    return pb.NeuralField(
        config=_field_config_pb(f.grid, f.decoder),
        tensors=pb.FieldTensors(tensors={name: _any_tensor(a) for name, a in f.tensors.items()}),
    )


def _camera_pb(c: Camera) -> pb.Camera:
    return pb.Camera(
        viewmat=c.viewmat.reshape(-1).tolist(), K=c.K.reshape(-1).tolist(), width=c.width, height=c.height, name=c.name
    )


def _color_pb(bg: Sequence[float]) -> pb.Color:
    r, g, b = (float(x) for x in bg)
    if not all(0.0 <= x <= 1.0 for x in (r, g, b)):
        raise invalid(f"background must be 3 numbers in [0, 1], got {tuple(bg)!r}")
    return pb.Color(r=r, g=g, b=b)


def _export_options_pb(o: ExportOptions) -> pb.ExportOptions:
    o.validate()
    msg = pb.ExportOptions(
        min_opacity=float(o.min_opacity),
        drop_non_finite=bool(o.drop_non_finite),
        spz_axes=pb.SPZ_AXES_RUB if o.spz_axes == "rub" else pb.SPZ_AXES_PLY,
        sog_sh_palette=int(o.sog_sh_palette),
    )
    if o.sh_degree is not None:
        msg.sh_degree = int(o.sh_degree)
    if o.box_min is not None and o.box_max is not None:
        msg.box_min.extend(float(v) for v in o.box_min)
        msg.box_max.extend(float(v) for v in o.box_max)
    return msg


def _config_pb(cfg: QuantizeConfig | None) -> pb.QuantizeConfig:
    if cfg is None:
        return pb.QuantizeConfig()
    cfg.validate()
    msg = pb.QuantizeConfig(preset=cfg.preset or "")
    for name, value in cfg.overrides().items():
        if name in ("position_precision", "opacity_precision"):
            value = _PRECISION[value]
        elif name == "entropy":
            value = _ENTROPY[value]
        elif name == "importance":
            value = {"views": pb.IMPORTANCE_VIEWS, "none": pb.IMPORTANCE_NONE}[value]
        setattr(msg, name, value)
    return msg


def _fill(msg: Any, values: dict[str, Any]) -> Any:
    """Set the scalar fields of ``msg`` from a config dataclass's set fields (enums by name)."""
    for name, value in values.items():
        try:
            setattr(msg, name, _ENUMS[name][value] if name in _ENUMS else value)
        except (TypeError, ValueError) as e:
            raise invalid(f"{type(msg).__name__}.{name} = {value!r} does not fit the API: {e}") from None
    return msg


def _dataset_options_pb(options: dict[str, Any]) -> pb.DatasetOptions:
    bg = options.pop("background", None)
    msg = _fill(pb.DatasetOptions(), options)
    if bg is not None:
        msg.background.CopyFrom(_color_pb(bg))
    return msg


def _splat_train_pb(cfg: SplatTrainConfig) -> pb.SplatTrainConfig:
    cfg.validate()
    values = set_fields(cfg)
    qat = values.pop("qat", None)
    options = {k: values.pop(k) for k in _DATASET_OPTIONS if k in values}
    msg = _fill(pb.SplatTrainConfig(), values)
    if qat is not None:
        msg.qat.CopyFrom(_fill(pb.SplatTrainConfig.QatConfig(), set_fields(qat)))
    if options:
        msg.dataset.CopyFrom(_dataset_options_pb(options))
    return msg


def _field_train_pb(cfg: FieldTrainConfig) -> pb.FieldTrainConfig:
    cfg.validate()
    values = set_fields(cfg)
    grid, decoder = values.pop("grid", None), values.pop("decoder", None)
    options = {k: values.pop(k) for k in _DATASET_OPTIONS if k in values}
    msg = _fill(pb.FieldTrainConfig(), values)
    msg.field.CopyFrom(_field_config_pb(grid, decoder))
    if options:
        msg.dataset.CopyFrom(_dataset_options_pb(options))
    return msg


def _field_config_pb(grid: GridConfig | None, decoder: DecoderConfig | None) -> pb.FieldConfig:
    msg = pb.FieldConfig()
    if isinstance(grid, DenseGridConfig):
        msg.dense.CopyFrom(_fill(pb.DenseGridConfig(), set_fields(grid)))
    elif isinstance(grid, HashGridConfig):
        msg.hash.CopyFrom(_fill(pb.HashGridConfig(), set_fields(grid)))
    elif isinstance(grid, VqadGridConfig):
        msg.vqad.CopyFrom(_fill(pb.VqadGridConfig(), set_fields(grid)))
    if decoder is not None:
        msg.decoder.CopyFrom(_fill(pb.DecoderConfig(), set_fields(decoder)))
    return msg


def _info(m: pb.ArtifactInfo) -> ArtifactInfo:
    return ArtifactInfo(
        id=m.id, name=m.name, kind=m.kind, size=m.size, created_at=m.created_at, source_job=m.source_job or None
    )


def _status(m: pb.JobStatus) -> JobStatus:
    return JobStatus(
        id=m.id,
        kind=_KIND_FROM_PB.get(m.kind, "unknown"),
        state=_STATE_FROM_PB.get(m.state, JobState.QUEUED),
        stage=m.stage,
        progress=m.progress,
        metrics=dict(m.metrics),
        results=[_info(r) for r in m.results],
        error=m.error,
        created_at=m.created_at or None,
        started_at=m.started_at or None,
        finished_at=m.finished_at or None,
        worker=m.worker,
    )


def _float_image(m: pb.RenderedImage) -> np.ndarray:
    """A rendered image sent as raw float32 [H, W, 3], checked against its stated size."""
    t = m.rgb
    shape = tuple(t.shape)
    if t.dtype != pb.DTYPE_FLOAT32 or shape != (m.height, m.width, 3) or len(t.data) != 4 * m.height * m.width * 3:
        raise VqpressError("DATA_LOSS", f"rendered image {m.index} is not float32 [{m.height}, {m.width}, 3]")
    return np.frombuffer(t.data, dtype="<f4").reshape(shape).astype(np.float32, copy=False)


# -- requests (shared by Client and vqpress.aio.Client: what differs is only the I/O) -------


def _source_plan(source: Source) -> tuple[dict[str, Any], str | os.PathLike | tuple[bytes, str, str] | None]:
    """(the request's ``source`` fields, None) when they are ready, or ({}, what to upload first): a
    path, or (bytes, name, kind) for splats too large to go inline."""
    if isinstance(source, ArtifactRef):
        return {"artifact": pb.ArtifactRef(id=source.id)}, None
    if isinstance(source, NeuralField):
        if source.nbytes > INLINE_FIELD_MAX_BYTES:
            raise invalid(
                f"the field's tensors hold {source.nbytes} bytes, more than one message carries; "
                "encode it as a .vqp and send its path or ArtifactRef"
            )
        return {"field": _field_pb(source)}, None
    if isinstance(source, Splats):
        if source.nbytes <= INLINE_SPLATS_MAX_BYTES:
            return {"splats": _splats_pb(source)}, None
        buf = io.BytesIO()
        np.savez(buf, **source.arrays())
        return {}, (buf.getvalue(), "splats.npz", "npz")
    if isinstance(source, (str, os.PathLike)):
        return {}, source
    raise invalid(f"source must be a path, an ArtifactRef, a Splats or a NeuralField, got {type(source).__name__}")


def _init_plan(init: Source) -> tuple[dict[str, Any], str | os.PathLike | tuple[bytes, str, str] | None]:
    """Like ``_source_plan`` for a scene to fine-tune, which always travels as an artifact: inline
    splats are stored as "init.npz" first."""
    if isinstance(init, Splats):
        buf = io.BytesIO()
        np.savez(buf, **init.arrays())
        return {}, (buf.getvalue(), "init.npz", "npz")
    if isinstance(init, NeuralField):
        raise invalid("init (a scene to fine-tune) must be a splat scene: a path, an ArtifactRef or Splats")
    return _source_plan(init)


def _quantize_fields(
    config: QuantizeConfig | FieldQuantizeConfig | None,
    cameras: Sequence[Camera] | None,
    background: Sequence[float] | None,
    evaluate: bool,
) -> dict[str, Any]:
    options: dict[str, Any]  # QuantizeRequest.options is a oneof: set the one config that fits
    if isinstance(config, FieldQuantizeConfig):
        options = {"field_config": _fill(pb.FieldQuantizeConfig(), set_fields(config.validate()))}
    else:
        options = {"config": _config_pb(config)}
    return {
        **options,
        "cameras": [_camera_pb(c) for c in cameras or ()],
        "background": _color_pb(background) if background is not None else None,
        "evaluate": None if evaluate else False,
    }


def _check_finetune(config: Any, dataset: Any, finetune_steps: int | None) -> bool:
    """Whether a quantize call fine-tunes on a dataset; refuses what cannot be sent."""
    steps_ok = isinstance(finetune_steps, int) and not isinstance(finetune_steps, bool) and finetune_steps >= 1
    if finetune_steps is not None and not (steps_ok and finetune_steps <= MAX_FINETUNE_STEPS):
        raise invalid(f"finetune_steps must be an integer in 1..{MAX_FINETUNE_STEPS}, got {finetune_steps!r}")
    if dataset is None:
        if finetune_steps is not None:
            raise invalid("finetune_steps needs a dataset: the photos the quantized scene is fine-tuned on")
        return False
    if isinstance(config, FieldQuantizeConfig):
        raise invalid("dataset (a fine-tune on photos) applies to splat scenes, not to neural fields")
    return True


def _finetune_pb(dataset: ArtifactRef, steps: int | None) -> pb.QuantizeFinetune:
    return pb.QuantizeFinetune(dataset=pb.ArtifactRef(id=dataset.id), steps=steps)


def _export_fields(format: str, config: QuantizeConfig | None, options: ExportOptions | None) -> dict[str, Any]:
    if format not in _EXPORT:
        raise invalid(f"export format {format!r} is not one of {sorted(_EXPORT)}")
    extra = {"options": _export_options_pb(options)} if options is not None else {}
    return {"format": _EXPORT[format], "config": _config_pb(config), **extra}


def _train_which(
    dataset: str | os.PathLike | ArtifactRef, config: SplatTrainConfig | FieldTrainConfig | None, init: Any
) -> dict[str, Any]:
    if config is None:
        is_image = not isinstance(dataset, ArtifactRef) and Path(dataset).suffix.lower() in _IMAGE_SUFFIXES
        config = FieldTrainConfig() if is_image else SplatTrainConfig()
    if isinstance(config, SplatTrainConfig):
        return {"splats": _splat_train_pb(config)}
    if isinstance(config, FieldTrainConfig):
        if init is not None:
            raise invalid("init (a scene to fine-tune) applies to splat training only")
        return {"field": _field_train_pb(config)}
    raise invalid(f"config must be a SplatTrainConfig or a FieldTrainConfig, got {type(config).__name__}")


def _render_fields(cameras: Sequence[Camera], background: Sequence[float], encoding: str) -> dict[str, Any]:
    if encoding not in ("png", "float32", "raw"):
        raise invalid(f"encoding must be 'png' or 'float32', got {encoding!r}")
    if not cameras:
        raise invalid("render needs at least one camera")
    return {
        "cameras": [_camera_pb(c) for c in cameras],
        "background": _color_pb(background),
        "encoding": pb.IMAGE_ENCODING_PNG if encoding == "png" else pb.IMAGE_ENCODING_FLOAT32,
    }


def _rendered(m: pb.RenderedImage, cameras: Sequence[Camera]) -> tuple[Camera, bytes | np.ndarray]:
    if m.index >= len(cameras):
        raise VqpressError("DATA_LOSS", f"server sent image {m.index} for {len(cameras)} cameras")
    return cameras[m.index], (m.png if m.WhichOneof("image") == "png" else _float_image(m))


# -- the client --------------------------------------------------------------------------


class Client:
    """A connection to a vqpress server.

    ``address`` is HOST:PORT; ``token`` is sent as ``authorization: Bearer <token>`` on every call;
    ``tls`` enables TLS (``TlsConfig(ca_cert=...)``). ``timeout`` (seconds, default 60) bounds each
    short call; streams and job waits have their own limits. ``digest_function`` ("blake3" or
    "sha256") names uploads by that digest; None (the default) takes the server's preference.
    Use as a context manager or ``close()``.
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls: _transport.TlsConfig | None = None,
        *,
        timeout: float = 60.0,
        digest_function: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.digest_function = _check_digest_function(digest_function)
        self._channel = _transport.make_channel(address, token=token, tls=tls)
        self._stub = pb_grpc.VqpressStub(self._channel)
        # The artifact streams carry their chunks through vqpress._wire (protobuf's bytes, fewer copies).
        self._upload = self._channel.stream_unary(_wire.UPLOAD_METHOD, response_deserializer=pb.ArtifactInfo.FromString)
        # (digest function to name uploads by, digest may come last, the functions taken), asked once
        self._digests: tuple[str, bool, tuple[str, ...]] | None = None
        self._download = self._channel.unary_stream(
            _wire.DOWNLOAD_METHOD,
            request_serializer=pb.DownloadArtifactRequest.SerializeToString,
            response_deserializer=_wire.decode_artifact_chunk,
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ------------------------------------------------------------------------

    def health(self, service: str = "") -> str:
        """The grpc.health.v1 status of ``service`` ("" = the server): "SERVING", "NOT_SERVING", ..."""
        health_pb2 = require("grpc_health.v1.health_pb2", "the health check", package="grpcio-health-checking")
        health_grpc = require("grpc_health.v1.health_pb2_grpc", "the health check", package="grpcio-health-checking")
        stub = health_grpc.HealthStub(self._channel)
        with translate_errors():
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    def server_info(self) -> ServerInfo:
        """The server's version, executor, devices (no "cuda:*": jobs run on its CPU) and limits."""
        with translate_errors():
            m = self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=self.timeout)
        lim = m.limits
        return ServerInfo(
            version=m.version,
            executor=m.executor,
            workers=m.workers,
            devices=tuple(m.devices),
            auth_required=m.auth_required,
            tls=m.tls,
            limits={f.name: int(getattr(lim, f.name)) for f in lim.DESCRIPTOR.fields},
            upload_digest_last=m.upload_digest_last,
            digest_functions=tuple(m.digest_functions),
        )

    def _server_digests(self) -> tuple[str, bool, tuple[str, ...]]:
        """The digest function to name uploads by with this server (its preference among those this
        client knows; sha256 with a server before digest functions), whether the digest may come
        last (servers before that do not take it) and the functions it takes. Asked once."""
        if self._digests is None:
            info = self.server_info()
            self._digests = _digest_plan(self.digest_function, info)
        return self._digests

    # -- artifacts ---------------------------------------------------------------------

    def upload(
        self,
        path: str | os.PathLike,
        kind: str | None = None,
        *,
        name: str | None = None,
        digest: str | None = None,
        sha256: str | None = None,
        hash_first: bool = True,
    ) -> ArtifactInfo:
        """Store a file on the server and return its artifact (an ArtifactRef with size, kind, ...).

        ``kind`` defaults to a guess from the file suffix. The server verifies size and digest
        (DATA_LOSS on a mismatch) and stores nothing on a failure. The artifact is named by the
        server's digest function (BLAKE3 on servers that offer it, sha256 before), unless ``digest``
        names the content. How the digest is had:
        - given (``digest``: the content's artifact id, ``blake3:<hex>`` or ``<hex>``, known from an
          earlier upload or a manifest; or ``sha256``: its sha256 in hex): nothing is sent when the
          server already holds the content;
        - ``hash_first`` (the default): the file is read once to hash it, then, unless the server
          already holds it, read again and sent;
        - ``hash_first=False``: the file is sent at once, hashed on another thread as it goes, and
          the digest sent last: one read of the file, but content the server holds is sent again (a
          server without ``upload_digest_last`` is hashed for first).
        """
        path = Path(path)
        kind = guess_kind(path) if kind is None else kind
        artifact_id = _given_id(digest, sha256)
        try:
            size = path.stat().st_size
            function, digest_last, taken = self._server_digests()
            if artifact_id is not None:
                _check_taken(digests.function_of(artifact_id), taken)
            elif not hash_first and digest_last:
                return self._upload_hashing(path, name or path.name, size, kind, function)
            else:
                artifact_id = digests.id_of_file(path, function)
        except OSError as e:
            raise invalid(f"{path}: cannot read: {e.strerror or e}") from None
        known = self._known(artifact_id, size)
        if known is not None:  # the server already holds these bytes: nothing to send
            return known
        header = _header(name or path.name, size, artifact_id, kind)

        def requests() -> Iterator[bytes]:
            yield _wire.encode_upload_header(header)
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(_transport.CHUNK_BYTES):
                    yield _wire.encode_upload_chunk(chunk)

        with translate_errors():
            return _info(self._upload(requests()))

    def _upload_hashing(self, path: Path, name: str, size: int, kind: str, function: str) -> ArtifactInfo:
        """Send the file at once and its digest last: each chunk read is hashed on another thread
        while it goes out, so the file is read once and the hash costs the stream no time."""
        opened = open(path, "rb", buffering=0)  # before the call: a file we cannot open is invalid input

        def requests() -> Iterator[bytes]:
            header = pb.UploadHeader(name=name, size=size, digest="", kind=kind, digest_function=function)
            yield _wire.encode_upload_header(header)
            h = digests.new(function)
            with opened as f, _Sinks((h.update,), name="vqpress-upload-hash") as sinks:
                while chunk := f.read(_transport.CHUNK_BYTES):
                    sinks.put(chunk)
                    yield _wire.encode_upload_chunk(chunk)
            yield _wire.encode_upload_digest(h.hexdigest())

        try:
            with translate_errors():
                return _info(self._upload(requests()))
        finally:
            opened.close()

    def upload_bytes(self, data: bytes, name: str, kind: str | None = None) -> ArtifactInfo:
        """Store bytes held in memory as an artifact named ``name`` (not sent when already stored)."""
        artifact_id = digests.id_of_bytes(data, self._server_digests()[0])
        known = self._known(artifact_id, len(data))
        if known is not None:
            return known
        header = _header(name, len(data), artifact_id, guess_kind(name) if kind is None else kind)
        view = memoryview(data)

        def requests() -> Iterator[bytes]:
            yield _wire.encode_upload_header(header)
            for i in range(0, len(view), _transport.CHUNK_BYTES):
                yield _wire.encode_upload_chunk(view[i : i + _transport.CHUNK_BYTES])

        with translate_errors():
            return _info(self._upload(requests()))

    def _known(self, artifact_id: str, size: int) -> ArtifactInfo | None:
        """The stored artifact with this content (artifacts are named by their digest), or None."""
        try:
            info = self.stat(artifact_id)
        except VqpressError as e:
            if e.code == "NOT_FOUND":
                return None
            raise
        return info if info.size == size else None

    def _chunks(self, ref: ArtifactRef | str) -> Iterator[memoryview | bytes]:
        with translate_errors():
            yield from self._download(pb.DownloadArtifactRequest(id=_id(ref)))

    def download(self, ref: ArtifactRef | str, path: str | os.PathLike) -> Path:
        """Write an artifact to ``path`` (a file, or an existing directory: then its stored name is used).

        The bytes go to a temporary file next to it, are checked against the artifact's size and
        digest (its id), and only then renamed into place; a failed download leaves nothing behind.
        """
        info = self.stat(ref)
        path = Path(path)
        if path.is_dir():
            path = path / (Path(info.name).name or digests.file_name(info.id))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                n, got = _hash_and_write(self._chunks(info), f, digests.function_of(info.id))
            if n != info.size or got != info.id:
                raise VqpressError(
                    "DATA_LOSS", f"download of {info.id} got {n} bytes with a different hash (expected {info.size})"
                )
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600: give it the mode open() would
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def download_bytes(self, ref: ArtifactRef | str) -> bytes:
        """An artifact's content in memory, checked against its digest (for small results)."""
        aid = _checked_id(ref)
        data = b"".join(self._chunks(aid))
        if digests.id_of_bytes(data, digests.function_of(aid)) != aid:
            raise VqpressError("DATA_LOSS", f"download of {aid} does not match its digest")
        return data

    def stat(self, ref: ArtifactRef | str) -> ArtifactInfo:
        with translate_errors():
            return _info(self._stub.StatArtifact(pb.StatArtifactRequest(id=_id(ref)), timeout=self.timeout))

    def list_artifacts(self, kind: str | None = None, limit: int = 1000) -> list[ArtifactInfo]:
        """Stored artifacts, newest first, optionally only those of ``kind``."""
        with translate_errors():
            resp = self._stub.ListArtifacts(pb.ListArtifactsRequest(kind=kind or "", limit=limit), timeout=self.timeout)
        return [_info(a) for a in resp.artifacts]

    def delete(self, ref: ArtifactRef | str) -> None:
        with translate_errors():
            self._stub.DeleteArtifact(pb.DeleteArtifactRequest(id=_id(ref)), timeout=self.timeout)

    # -- work --------------------------------------------------------------------------

    def _source(self, source: Source) -> dict[str, Any]:
        """The request's ``source`` oneof: a stored artifact, inline splats (large ones are uploaded) or
        an inline neural field."""
        fields, upload = _source_plan(source)
        return fields if upload is None else {"artifact": pb.ArtifactRef(id=self._put(upload).id)}

    def _put(self, upload: str | os.PathLike | tuple[bytes, str, str]) -> ArtifactInfo:
        return self.upload(upload) if isinstance(upload, (str, os.PathLike)) else self.upload_bytes(*upload)

    def quantize(
        self,
        source: Source,
        config: QuantizeConfig | FieldQuantizeConfig | None = None,
        *,
        cameras: Sequence[Camera] | None = None,
        background: Sequence[float] | None = None,
        evaluate: bool = True,
        dataset: str | os.PathLike | ArtifactRef | None = None,
        finetune_steps: int | None = None,
    ) -> Job:
        """Start compressing a splat scene to .vqp, or post-hoc compressing a stored dense neural field
        (a field .vqp; ``config`` a FieldQuantizeConfig, default kmVQ at 4 bits). Results: [the .vqp,
        report.json].

        ``cameras`` are the views PSNR/SSIM of a scene are measured on (default: orbit views chosen
        by the server), rendered over ``background`` (default black). ``evaluate=False`` skips the
        renders: the report then has sizes and timings only.

        ``dataset`` (splat scenes): the posed photos the scene was trained on, a .zip/.tar archive as
        Train takes (a path is uploaded first). After quantizing, the quantized scene is fine-tuned on
        them for ``finetune_steps`` steps (default 3000; its indices stay fixed, the codebooks,
        positions and opacities learn), and PSNR/SSIM are measured on the held-out photos, before
        and after (the report's "finetune"). Training runs on the server's GPU, or slowly on its CPU.
        """
        cfg_fields = _quantize_fields(config, cameras, background, evaluate)  # validated before any upload
        if _check_finetune(config, dataset, finetune_steps):
            if not isinstance(dataset, ArtifactRef):
                dataset = self.upload(dataset, kind=guess_kind(dataset) or "dataset")  # type: ignore[arg-type]
            cfg_fields["finetune"] = _finetune_pb(dataset, finetune_steps)
        req = pb.QuantizeRequest(**cfg_fields, **self._source(source))
        with translate_errors():
            return Job(self, self._stub.Quantize(req, timeout=self.timeout).id)

    def export(
        self,
        source: Source,
        format: ExportFormatName,
        config: QuantizeConfig | None = None,
        options: ExportOptions | None = None,
    ) -> Job:
        """Start converting a scene (or decoding a .vqp) to ``format``. Results: [the file].
        ``config`` applies to format "vqp" only; ``options`` (filters, .spz axes, SOG palette) to the others."""
        req = pb.ExportRequest(**_export_fields(format, config, options), **self._source(source))
        with translate_errors():
            return Job(self, self._stub.Export(req, timeout=self.timeout).id)

    def train(
        self,
        dataset: str | os.PathLike | ArtifactRef,
        config: SplatTrainConfig | FieldTrainConfig | None = None,
        *,
        init: Source | None = None,
    ) -> Job:
        """Start training; the config's type decides what (None: a splat scene, or a 2D image field
        when ``dataset`` is a .png/.jpg file). Every unset config field takes the server's default.

        ``dataset``: a .zip/.tar archive of posed images (NeRF-synthetic, instant-ngp or COLMAP), or
        for a field also a PNG/JPEG image; a path is uploaded first. ``init``: a splat scene to
        fine-tune (splats only). Results: splats [scene.vqp, scene.ply, report.json]; fields
        [field.vqp, report.json(, preview.png for an image field)].
        """
        which = _train_which(dataset, config, init)
        if not isinstance(dataset, ArtifactRef):
            dataset = self.upload(dataset, kind=guess_kind(dataset) or "dataset")
        if init is not None:
            fields, upload = _init_plan(init)
            which["init"] = fields["artifact"] if upload is None else pb.ArtifactRef(id=self._put(upload).id)
        req = pb.TrainRequest(dataset=pb.DatasetSource(archive=pb.ArtifactRef(id=dataset.id)), **which)
        with translate_errors():
            return Job(self, self._stub.Train(req, timeout=self.timeout).id)

    def submit_render(
        self,
        source: Source,
        cameras: Sequence[Camera],
        background: Sequence[float] = (1.0, 1.0, 1.0),
        encoding: Encoding = "png",
    ) -> Job:
        """Start a render job and return at once (what ``vqpress render --detach`` does). Results:
        one image per camera, in camera order, named ``<index>_<camera name>.png`` (``.npy`` float32
        for ``encoding="float32"``); fetch them with ``download`` when the job has succeeded."""
        req = pb.RenderRequest(**_render_fields(cameras, background, encoding), **self._source(source))
        with translate_errors():
            return Job(self, self._stub.SubmitRender(req, timeout=self.timeout).id)

    def render_iter(
        self,
        source: Source,
        cameras: Sequence[Camera],
        background: Sequence[float] = (1.0, 1.0, 1.0),
        encoding: Encoding = "png",
        *,
        timeout: float | None = None,
    ) -> Iterator[tuple[Camera, bytes | np.ndarray]]:
        """(camera, image) in camera order: PNG bytes as the server sent them for ``encoding="png"``,
        float32 [H, W, 3] arrays for "float32" (alias "raw")."""
        req = pb.RenderRequest(**_render_fields(cameras, background, encoding), **self._source(source))
        with translate_errors():
            for m in self._stub.Render(req, timeout=timeout):
                yield _rendered(m, cameras)

    def render(
        self,
        source: Source,
        cameras: Sequence[Camera],
        background: Sequence[float] = (1.0, 1.0, 1.0),
        encoding: Encoding = "png",
        *,
        timeout: float | None = None,
    ) -> list[np.ndarray]:
        """Render a scene from each camera: [H, W, 3] uint8 images for ``encoding="png"``, float32
        in [0, 1] for "float32" (alias "raw"), in camera order. ``background`` is RGB in [0, 1]."""
        out = []
        for _, img in self.render_iter(source, cameras, background, encoding, timeout=timeout):
            out.append(to_rgb(decode_png(img)) if isinstance(img, bytes) else img)
        if len(out) != len(cameras):
            raise VqpressError("DATA_LOSS", f"server sent {len(out)} images for {len(cameras)} cameras")
        return out

    # -- jobs --------------------------------------------------------------------------

    def job(self, id: str) -> Job:
        """A handle on an existing job (checked to exist: NOT_FOUND otherwise)."""
        job = Job(self, id)
        job.status()
        return job

    def jobs(self, states: Iterable[JobState | str] | None = None, limit: int = 100) -> list[JobStatus]:
        """Jobs, newest first, optionally only those in ``states``."""
        try:
            pb_states = [_STATE_TO_PB[JobState(s)] for s in states or ()]
        except ValueError as e:
            raise invalid(f"{e}; states are {[s.value for s in JobState]}") from None
        with translate_errors():
            resp = self._stub.ListJobs(pb.ListJobsRequest(states=pb_states, limit=limit), timeout=self.timeout)
        return [_status(j) for j in resp.jobs]

    def _get_job(self, id: str) -> JobStatus:
        with translate_errors():
            return _status(self._stub.GetJob(pb.GetJobRequest(id=id), timeout=self.timeout))

    def _watch(self, id: str, timeout: float | None) -> Iterator[JobStatus]:
        call = self._stub.WatchJob(pb.WatchJobRequest(id=id), timeout=timeout)
        try:
            for m in call:
                yield _status(m)
        finally:
            call.cancel()  # the caller may stop early (at a terminal state): end the stream now

    def _cancel(self, id: str) -> JobStatus:
        with translate_errors():
            return _status(self._stub.CancelJob(pb.CancelJobRequest(id=id), timeout=self.timeout))


class Job:
    """A job on the server: follow it with ``status``, ``watch`` or ``wait``; fetch its results."""

    def __init__(self, client: Client, id: str) -> None:
        self._client = client
        self.id = id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        return self._client._get_job(self.id)

    def watch(self, timeout: float | None = None) -> Iterator[JobStatus]:
        """The status now and after every change, until the job is terminal (a WatchJob stream)."""
        with translate_errors():
            for st in self._client._watch(self.id, timeout):
                yield st
                if st.terminal:
                    return

    def wait(
        self,
        timeout: float | None = None,
        *,
        on_status: Callable[[JobStatus], None] | None = None,
        on_retry: Callable[[VqpressError], None] | None = None,
        unavailable_timeout: float | None = None,
    ) -> JobStatus:
        """Block until the job SUCCEEDED and return its status.

        Raises ``JobFailed`` (code "FAILED", the server's reason) when it failed, ``JobCancelled``
        (code "CANCELLED") when it was cancelled, ``JobTimeout`` (code "DEADLINE_EXCEEDED", also a
        TimeoutError) after ``timeout`` seconds (None = no limit; the job goes on running).

        A server that restarts or a connection that breaks meanwhile is waited for and the job
        re-attached: ``on_retry(error)`` is told each time; after ``unavailable_timeout`` seconds
        without reaching the server (None = as long as ``timeout`` allows) the UNAVAILABLE error is
        raised. ``on_status`` sees every status the server sends.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        lost_since: float | None = None
        pause = _RETRY_WAIT_S[0]
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise JobTimeout(self.id, timeout)
            try:
                for st in self._client._watch(self.id, remaining):
                    lost_since, pause = None, _RETRY_WAIT_S[0]
                    if on_status is not None:
                        on_status(st)
                    if st.terminal:
                        if st.state is JobState.FAILED:
                            raise JobFailed(self.id, st.error)
                        if st.state is JobState.CANCELLED:
                            raise JobCancelled(self.id, st.error)
                        return st
                # The stream ended before the job did: the server is stopping (or restarting).
                if on_retry is not None:
                    on_retry(VqpressError("UNAVAILABLE", "the server ended the status stream before the job ended"))
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise JobTimeout(self.id, timeout) from None
                if code not in _RETRY_CODES:
                    with translate_errors():
                        raise
                now = time.monotonic()
                lost_since = now if lost_since is None else lost_since
                error = from_rpc_error(err)
                if unavailable_timeout is not None and now - lost_since > unavailable_timeout:
                    raise VqpressError(
                        error.code,
                        f"lost the server while waiting for job {self.id} and could not reach it again "
                        f"within {unavailable_timeout:g} s: {error.message}",
                    ) from None
                if on_retry is not None:
                    on_retry(error)
            # The stream ended early or the server went away: re-attach after a growing pause.
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(2 * pause, _RETRY_WAIT_S[1])

    def cancel(self) -> JobStatus:
        """Ask the job to stop; returns its status right after the request (CANCELLED or CANCELLING)."""
        return self._client._cancel(self.id)

    @property
    def results(self) -> list[ArtifactInfo]:
        """The result artifacts (empty until the job SUCCEEDED)."""
        return self.status().results

    def download_results(self, directory: str | os.PathLike) -> list[Path]:
        """Download every result into ``directory`` (created if needed) under its stored name."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        return [self._client.download(r, d / (Path(r.name).name or digests.file_name(r.id))) for r in self.results]


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask (reading it means setting it; the lock keeps two readers apart)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _id(ref: ArtifactRef | str) -> str:
    return ref if isinstance(ref, str) else ref.id


def _check_digest_function(function: str | None) -> str | None:
    if function is None:
        return None
    try:
        return digests.check_function(function)
    except ValueError as e:
        raise invalid(str(e)) from None


def _digest_plan(wanted: str | None, info: ServerInfo) -> tuple[str, bool, tuple[str, ...]]:
    """(the digest function to name uploads by, whether the digest may come last, the functions the
    server takes): ``wanted`` if the server takes it, else the server's preference among those this
    client knows. A server before digest functions takes sha256 only."""
    taken = info.digest_functions or (digests.SHA256,)
    if wanted is not None:
        _check_taken(wanted, taken, "drop digest_function or pick one of those")
    return wanted or digests.choose(info.digest_functions), info.upload_digest_last, taken


def _check_taken(function: str, taken: tuple[str, ...], fix: str = "name the content by one of those") -> None:
    if function not in taken:
        raise invalid(f"the server takes uploads in {', '.join(taken)}, not {function}: {fix}")


def _given_id(digest: str | None, sha256: str | None) -> str | None:
    """The artifact id an upload's caller gave for its content (``digest``: an id of either form;
    ``sha256``: a sha256 in hex), checked; None when neither is given."""
    if digest is not None and sha256 is not None:
        raise invalid("give the content's digest or its sha256, not both")
    if sha256 is not None:
        digest = sha256.lower()
    if digest is None:
        return None
    if not digests.is_id(digest):
        raise invalid(f"{digest[:80]!r} is not an artifact id: 'blake3:' and 64 lowercase hex digits, or 64 (sha256)")
    return digest


def _checked_id(ref: ArtifactRef | str) -> str:
    aid = _id(ref)
    if not digests.is_id(aid):
        raise invalid(f"{str(aid)[:80]!r} is not an artifact id: 'blake3:' and 64 lowercase hex digits, or 64 (sha256)")
    return aid


def _header(name: str, size: int, artifact_id: str, kind: str) -> pb.UploadHeader:
    """The upload header of content whose id is ``artifact_id``."""
    function, hexdigest = digests.parse_id(artifact_id)
    return pb.UploadHeader(name=name, size=size, digest=hexdigest, kind=kind, digest_function=function)


def _hash_and_write(chunks: Iterator[memoryview | bytes], f: BinaryIO, function: str) -> tuple[int, str]:
    """Write chunks to ``f`` and hash them in ``function``, each on a thread of its own (both release
    the GIL), so receiving the next chunk, hashing and writing overlap. Returns (bytes, artifact id)."""
    h = digests.new(function)
    n = 0
    with _Sinks((h.update, f.write)) as sinks:
        for chunk in chunks:
            sinks.put(chunk)
            n += len(chunk)
    return n, digests.make_id(function, h.hexdigest())


class _Sinks:
    """Feeds each item to every consumer, each on its own thread through a bounded queue. A consumer
    that raises (a full disk) stops the feeding: ``put`` and leaving the block raise its error."""

    def __init__(self, consumers: Sequence[Callable[[Any], object]], name: str = "vqpress-download") -> None:
        self._queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=_PIPELINE_DEPTH) for _ in consumers]
        self._failure: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(fn, q), name=name, daemon=True)
            for fn, q in zip(consumers, self._queues, strict=True)
        ]

    def _run(self, fn: Callable[[Any], object], q: queue.Queue[Any]) -> None:
        while (item := q.get()) is not _END:
            if self._failure:
                continue  # keep draining so the feeder never blocks
            try:
                fn(item)
            except BaseException as e:
                self._failure.append(e)

    def put(self, item: Any) -> None:
        if self._failure:
            raise self._failure[0]
        for q in self._queues:
            q.put(item)

    def __enter__(self) -> _Sinks:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for q in self._queues:
            q.put(_END)
        for t in self._threads:
            t.join()
        if self._failure and exc[0] is None:
            raise self._failure[0]


_END = object()  # the end of a _Sinks queue


__all__ = ["Background", "Client", "Job", "guess_kind"]
