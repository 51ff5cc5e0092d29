"""The Vqpress servicer: validate, convert, store or enqueue, convert back. Nothing more.

Each work RPC builds its job's typed spec once (``jobs/specs.py``): the proto converted and
validated by ``convert``, the scene looked up by ``sources`` (which says splat scene or neural
field, from the stored file's header), the spec class chosen by that. No torch work runs here:
jobs go to the worker processes through the job table; an inline neural field is built by a
BUILD_FIELD job the call waits for. Exceptions are
mapped to status codes by ``errors.translate_errors`` (one table, applied once to every RPC).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from vqpress import digests
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.v1 import vqpress_pb2_grpc as pb_grpc

from ..artifacts.store import ArtifactIntegrityError, ArtifactNotFound, ArtifactStore, ArtifactTooLarge
from ..jobs.model import JobRecord, JobState
from ..jobs.specs import (
    DEFAULT_FINETUNE_STEPS,
    MAX_RENDER_CAMERAS,
    BuildFieldSpec,
    CameraSpec,
    ExportFieldSpec,
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
    outbox_name,
)
from ..jobs.table import JobTable
from ..settings import CHUNK_BYTES, MAX_MESSAGE_BYTES, Settings
from . import convert
from .errors import ServiceError, invalid_argument, translate_errors
from .sources import SceneRef, check_dataset_artifact, check_scene_artifact, field_manifest, scene_source

log = logging.getLogger(__name__)

RPC_NAMES = list(pb.DESCRIPTOR.services_by_name["Vqpress"].methods_by_name)
WATCH_SLICE_S = 1.0  # longest wait between checks that a watching or rendering client is still there (s)
DEFAULT_JOB_LIMIT, MAX_JOB_LIMIT = 100, 1000
DEFAULT_ARTIFACT_LIMIT, MAX_ARTIFACT_LIMIT = 1000, 10000
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# The status of a Render whose job failed, by whose fault it was (jobs.model.FAILURES); a job whose
# workers were lost ("") is INTERNAL too.
_FAILURE_CODES = {
    "input": grpc.StatusCode.INVALID_ARGUMENT,
    "limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "internal": grpc.StatusCode.INTERNAL,
}


@translate_errors(RPC_NAMES)
class VqpressServicer(pb_grpc.VqpressServicer):
    """Serves the API over an artifact store and a job table; ``notify`` wakes idle workers."""

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore,
        jobs: JobTable,
        notify: Callable[[], None],
        devices: Callable[[], Sequence[str]] = lambda: (),
        stream_renders: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.notify = notify
        self.devices = devices  # each worker's device ("cuda:0", "cpu"), for GetServerInfo
        # Whether a Render's images come from the workers through settings.outbox_dir (as each is
        # rendered, never stored) or as the stored results of its job (Executor.streams_renders).
        self.stream_renders = stream_renders

    def GetServerInfo(self, request: pb.GetServerInfoRequest, context: Any) -> pb.ServerInfo:
        from .. import __version__

        devices = list(self.devices())
        s = self.settings
        return pb.ServerInfo(
            version=__version__,
            executor="local worker processes",
            workers=len(devices),
            devices=devices,
            auth_required=bool(s.token),
            tls=s.tls_cert is not None,
            limits=pb.ServerLimits(
                max_message_bytes=MAX_MESSAGE_BYTES,
                chunk_bytes=CHUNK_BYTES,
                max_artifact_bytes=s.max_artifact_bytes,
                max_queued_jobs=s.max_queued_jobs,
                max_render_cameras=MAX_RENDER_CAMERAS,
            ),
            upload_digest_last=True,
            # the store's own function first: what its job results are named by
            digest_functions=[self.store.digest_function]
            + [f for f in digests.FUNCTIONS if f != self.store.digest_function],
        )

    # -- artifacts -------------------------------------------------------------------
    def UploadArtifact(
        self, request_iterator: Iterator[memoryview | pb.UploadArtifactRequest], context: Any
    ) -> pb.ArtifactInfo:
        # Messages come through vqpress._wire (server.add_servicer): a chunk as a view of its bytes,
        # anything else as the protobuf message.
        first = next(request_iterator, None)
        if not isinstance(first, pb.UploadArtifactRequest) or first.WhichOneof("part") != "header":
            raise invalid_argument(
                "an upload starts with its header (name, size, digest, kind, digest_function), then the chunks"
            )
        h = first.header
        if not h.name:
            raise invalid_argument("UploadHeader.name is empty; give the file's name, e.g. 'scene.ply'")
        function = h.digest_function or digests.SHA256  # senders before digest functions send sha256
        if function not in digests.FUNCTIONS:
            raise invalid_argument(
                f"UploadHeader.digest_function {function[:40]!r} is not one this server takes: "
                f"{', '.join(digests.FUNCTIONS)}"
            )
        last = not h.digest  # the digest comes as the last message, after the bytes
        if not last and _HEX64.fullmatch(h.digest) is None:
            raise invalid_argument(
                f"UploadHeader.digest must be the content's {function} as 64 hex digits, or empty when the "
                "upload's last message carries it"
            )
        try:
            upload = self.store.begin_upload(
                h.name, h.size, None if last else h.digest.lower(), h.kind, digest_function=function
            )
        except (ArtifactIntegrityError, ArtifactTooLarge):
            raise
        except ValueError as e:  # a name or kind the store refuses; the message says which
            raise invalid_argument(str(e)) from None
        with upload:  # aborts (leaving nothing) on any exception, a cancelled call included
            trailer: str | None = None
            for msg in request_iterator:
                if trailer is not None:
                    raise invalid_argument("an upload's digest message is its last; nothing may follow it")
                if isinstance(msg, memoryview):
                    upload.write(msg)
                elif msg.WhichOneof("part") == "chunk":
                    upload.write(msg.chunk)
                elif msg.WhichOneof("part") == "digest" and last:
                    if _HEX64.fullmatch(msg.digest) is None:
                        raise invalid_argument(f"the upload's digest message must be its {function} as 64 hex digits")
                    trailer = msg.digest.lower()
                elif msg.WhichOneof("part") == "digest":
                    raise invalid_argument("this upload's header gave its digest; it takes no digest message")
                else:
                    raise invalid_argument(
                        "an upload has one header, first, then chunks (and its digest last when the header's is empty)"
                    )
            if last and trailer is None:
                raise invalid_argument(
                    "this upload's header left its digest empty, so its last message must carry the digest; "
                    "it ended without one"
                )
            info = upload.commit(digest=trailer)
        return convert.artifact_info(info)

    def DownloadArtifact(self, request: pb.DownloadArtifactRequest, context: Any) -> Iterator[bytes]:
        # Each chunk's bytes; vqpress._wire encodes them as ArtifactChunk messages (server.add_servicer).
        yield from self.store.iter_chunks(request.id, CHUNK_BYTES)

    def StatArtifact(self, request: pb.StatArtifactRequest, context: Any) -> pb.ArtifactInfo:
        return convert.artifact_info(self.store.stat(request.id))

    def ListArtifacts(self, request: pb.ListArtifactsRequest, context: Any) -> pb.ListArtifactsResponse:
        limit = min(request.limit or DEFAULT_ARTIFACT_LIMIT, MAX_ARTIFACT_LIMIT)
        infos = self.store.list(kind=request.kind or None, limit=limit)
        return pb.ListArtifactsResponse(artifacts=[convert.artifact_info(i) for i in infos])

    def DeleteArtifact(self, request: pb.DeleteArtifactRequest, context: Any) -> pb.DeleteArtifactResponse:
        self.store.delete(request.id)
        return pb.DeleteArtifactResponse()

    # -- work ------------------------------------------------------------------------
    # Each RPC builds its job's typed spec once (jobs/specs.py); the spec type says splats or field.
    def Quantize(self, request: pb.QuantizeRequest, context: Any) -> pb.JobRef:
        config = convert.quantize_config(request.config)
        source = self._source(request, context, strict=config.strict, rpc="Quantize")
        spec: JobSpec
        if source.field is not None:  # post-hoc compression of a stored dense field
            if request.WhichOneof("options") == "config" and request.config.ByteSize():
                raise invalid_argument(
                    "QuantizeRequest.config (QuantizeConfig) applies to Gaussian splat scenes; this source is "
                    "a neural field: set field_config (FieldQuantizeConfig) instead"
                )
            if not source.field.dense:
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"field {source.artifact} is stored as {source.field.storage!r}: post-hoc "
                    "quantization needs a field trained with a dense grid (VQ-AD and hash fields are trained compact)",
                )
            if request.HasField("finetune"):
                raise invalid_argument(
                    "QuantizeRequest.finetune (a fine-tune on photos) applies to Gaussian splat scenes; this "
                    "source is a neural field: leave finetune unset"
                )
            field_config = convert.field_quantize_config(request.field_config, source.field.features)
            spec = QuantizeFieldSpec(source.artifact, field_config)
        else:
            if request.HasField("field_config"):
                raise invalid_argument(
                    "QuantizeRequest.field_config applies to neural-field sources (a field .vqp); this source is "
                    "a Gaussian splat scene: leave field_config unset"
                )
            cameras = convert.camera_specs(request.cameras) or None
            bg = convert.background(request.background) if request.HasField("background") else None
            evaluate = request.evaluate if request.HasField("evaluate") else True
            finetune = self._finetune(request.finetune) if request.HasField("finetune") else None
            spec = QuantizeSplatsSpec(source.artifact, config, cameras, bg, evaluate, finetune)
        return pb.JobRef(id=self._submit(spec).id)

    def _finetune(self, msg: pb.QuantizeFinetune) -> FinetuneSpec:
        """The fine-tune a Quantize request asks for: its dataset checked like Train's, its steps bounded."""
        if not msg.HasField("dataset") or not msg.dataset.id:
            raise invalid_argument(
                "QuantizeRequest.finetune.dataset is not set: upload the photos' archive and send its ArtifactRef"
            )
        check_dataset_artifact(self.store, msg.dataset.id, allow_image=False)
        steps = int(msg.steps) if msg.HasField("steps") else DEFAULT_FINETUNE_STEPS
        try:
            return FinetuneSpec(msg.dataset.id, steps)
        except SpecError as e:
            raise invalid_argument(f"QuantizeRequest.{e}") from None

    def Export(self, request: pb.ExportRequest, context: Any) -> pb.JobRef:
        fmt = convert.export_format(request.format)
        config = convert.quantize_config(request.config) if fmt == "vqp" else None
        strict = bool(config and config.strict)
        source = self._source(request, context, strict=strict, rpc="Export")
        spec: JobSpec
        if source.field is not None:
            if fmt != "vqp":
                raise invalid_argument(
                    f"a neural field exports to EXPORT_FORMAT_VQP only, not {fmt!r}; render it to images with Render"
                )
            spec = ExportFieldSpec(source.artifact)
        else:
            options = convert.export_options(request.options) if request.HasField("options") else None
            spec = ExportSplatsSpec(source.artifact, fmt, config, options)  # type: ignore[arg-type]
        return pb.JobRef(id=self._submit(spec).id)

    def Train(self, request: pb.TrainRequest, context: Any) -> pb.JobRef:
        which = request.WhichOneof("config")
        if which is None:
            raise invalid_argument(
                "TrainRequest needs a config: set splats (SplatTrainConfig) or field (FieldTrainConfig)"
            )
        # Configs first: a bad one fails before the dataset is looked at.
        if which == "splats":
            config = convert.splat_train_config(request.splats)
            data_options = convert.DatasetConfig()  # the photos at full size unless the request says
            if request.splats.HasField("dataset"):
                data_options = convert.dataset_options(request.splats.dataset, "SplatTrainConfig.dataset")
        else:
            convert.field_train_configs(request.field, 2)  # the 2D field's checks; dims follow the dataset
        if request.dataset.WhichOneof("source") != "archive":
            raise invalid_argument(
                "TrainRequest.dataset.archive is not set: upload the dataset and send its ArtifactRef"
            )
        dataset = request.dataset.archive.id
        found = check_dataset_artifact(self.store, dataset, allow_image=which == "field")
        if which == "field":
            if request.HasField("init"):
                raise invalid_argument("TrainRequest.init (a scene to fine-tune) applies to splat training only")
            field, train, options = convert.field_train_configs(request.field, 2 if found == "image" else 3)
            return pb.JobRef(id=self._submit(TrainFieldSpec(dataset, field, train, options)).id)
        init = None
        if request.HasField("init"):
            check_scene_artifact(self.store, request.init.id)
            if field_manifest(self.store, request.init.id) is not None:
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"TrainRequest.init {request.init.id} is a neural field, not a splat scene to fine-tune",
                )
            init = request.init.id
        return pb.JobRef(id=self._submit(TrainSplatsSpec(dataset, config, init, data_options)).id)

    def _render_spec(self, request: pb.RenderRequest, context: Any, rpc: str) -> RenderSplatsSpec | RenderFieldSpec:
        """The checked render job of a RenderRequest (Render and SubmitRender share it)."""
        encoding = convert.image_encoding(request.encoding)
        if not request.cameras:
            raise invalid_argument("RenderRequest.cameras is empty; send at least one camera")
        max_pixels = convert.MAX_PNG_PIXELS if encoding == "png" else convert.MAX_FLOAT32_PIXELS
        cameras = convert.camera_specs(request.cameras, max_pixels=max_pixels)
        bg = convert.background(request.background) if request.HasField("background") else (0.0, 0.0, 0.0)
        source = self._source(request, context, strict=False, rpc=rpc)
        if source.field is not None:
            return RenderFieldSpec(source.artifact, cameras, bg, encoding)  # type: ignore[arg-type]
        return RenderSplatsSpec(source.artifact, cameras, bg, encoding)  # type: ignore[arg-type]

    def SubmitRender(self, request: pb.RenderRequest, context: Any) -> pb.JobRef:
        return pb.JobRef(id=self._submit(self._render_spec(request, context, "SubmitRender")).id)

    def Render(self, request: pb.RenderRequest, context: Any) -> Iterator[pb.RenderedImage]:
        spec = self._render_spec(request, context, "Render")
        cameras, encoding = spec.cameras, spec.encoding
        if self.stream_renders:
            yield from self._render_streamed(dataclasses.replace(spec, stream=True), context)
            return
        rec = self._run_to_end(self._submit(spec), context)
        if rec is None:
            return
        if len(rec.results) != len(cameras):
            raise RuntimeError(f"render job {rec.id} returned {len(rec.results)} images for {len(cameras)} cameras")
        for i, (artifact_id, cam) in enumerate(zip(rec.results, cameras, strict=True)):
            yield self._rendered_image(i, self.store.read_bytes(artifact_id), cam, encoding, artifact_id)

    def _render_streamed(self, spec: RenderSplatsSpec | RenderFieldSpec, context: Any) -> Iterator[pb.RenderedImage]:
        """Each image as soon as the worker has put it in the job's outbox (whole: written, then
        renamed), in camera order; the outbox goes when the call ends, however it ends, and the job
        is cancelled when the call ends before it."""
        rec = self._submit(spec)
        outbox = self.settings.outbox_dir / rec.id
        sent = 0
        try:
            while True:
                while sent < len(spec.cameras):
                    try:
                        data = (outbox / outbox_name(sent, spec.encoding)).read_bytes()
                    except FileNotFoundError:
                        break  # not rendered yet (or the job failed and its outbox went)
                    yield self._rendered_image(sent, data, spec.cameras[sent], spec.encoding, rec.id)
                    sent += 1
                if rec.terminal:
                    break
                if not context.is_active():  # the client cancelled or its deadline passed
                    self.jobs.request_cancel(rec.id)
                    return
                rec = self.jobs.wait_for_change(rec.id, rec.version, WATCH_SLICE_S)
            self._check_outcome(rec)
            if sent != len(spec.cameras):
                raise RuntimeError(f"render job {rec.id} delivered {sent} images for {len(spec.cameras)} cameras")
        finally:
            if not rec.terminal:  # the call ended first (a client gone mid-stream): the job goes too
                self.jobs.request_cancel(rec.id)
            shutil.rmtree(outbox, ignore_errors=True)

    def _source(self, request: Any, context: Any, *, strict: bool, rpc: str) -> SceneRef:
        """The request's scene; an inline field is built by a BUILD_FIELD job the call waits for."""

        def build_field(spec: BuildFieldSpec) -> str:
            try:
                rec = self._run_to_end(self._submit(spec), context, what="NeuralField")
            finally:
                self.store.delete(spec.tensors)  # the tensors were for this build only
            if rec is None:
                raise ServiceError(grpc.StatusCode.CANCELLED, "the call ended while its inline field was built")
            return rec.results[0]

        return scene_source(request, self.store, strict=strict, rpc=rpc, build_field=build_field)

    def _run_to_end(self, rec: JobRecord, context: Any, what: str = "") -> JobRecord | None:
        """Wait for a job the call needs done; None when the caller left (the job is cancelled).
        A failed job answers with the status of whose fault it was (jobs.model.FAILURES)."""
        while not rec.terminal:
            if not context.is_active():  # the client cancelled or its deadline passed
                self.jobs.request_cancel(rec.id)
                return None
            rec = self.jobs.wait_for_change(rec.id, rec.version, WATCH_SLICE_S)
        self._check_outcome(rec, what)
        return rec

    @staticmethod
    def _check_outcome(rec: JobRecord, what: str = "") -> None:
        """Raise the status a job that ended without succeeding answers with."""
        if rec.state is JobState.CANCELLED:
            raise ServiceError(grpc.StatusCode.CANCELLED, f"{rec.kind.value} job {rec.id} was cancelled: {rec.error}")
        if rec.state is not JobState.SUCCEEDED:
            # The worker recorded whose fault it was: the input, a budget or the disk, or a bug.
            code = _FAILURE_CODES.get(rec.failure, grpc.StatusCode.INTERNAL)
            if what and rec.failure in ("input", "limit"):
                raise ServiceError(code, f"{what}: {rec.error}")
            raise ServiceError(code, f"{rec.kind.value} job {rec.id} failed: {rec.error}")

    def _rendered_image(self, index: int, data: bytes, cam: CameraSpec, encoding: str, origin: str) -> pb.RenderedImage:
        """The message of image ``index`` (``data``: a PNG, or an .npy of float32 [H, W, 3]); ``origin``
        names where it came from (an artifact or a job) in an error."""
        img = pb.RenderedImage(index=index, name=cam.name, width=cam.width, height=cam.height)
        if encoding == "png":
            img.png = data
        else:
            rgb = np.load(io.BytesIO(data), allow_pickle=False)
            if rgb.shape != (cam.height, cam.width, 3) or rgb.dtype != np.float32:
                raise RuntimeError(f"render result {origin} is {rgb.dtype} {rgb.shape}, not float32 [H, W, 3]")
            img.rgb.CopyFrom(convert.tensor_from_array(rgb))
        return img

    def _submit(self, spec: JobSpec) -> JobRecord:
        free = shutil.disk_usage(self.settings.data_dir).free
        if free < self.settings.min_free_bytes:
            raise ServiceError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server's disk has {free} bytes free, less than the {self.settings.min_free_bytes} a job "
                "needs (min_free_bytes); retry once space is freed (delete artifacts you no longer need)",
            )
        rec = self.jobs.submit_spec(spec, max_queued=self.settings.max_queued_jobs)
        self.notify()
        log.info("queued %s job %s (%s)", spec.KIND.value, rec.id, spec.TYPE)
        return rec

    # -- jobs ------------------------------------------------------------------------
    def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.JobStatus:
        return self._status(self.jobs.get(request.id))

    def WatchJob(self, request: pb.WatchJobRequest, context: Any) -> Iterator[pb.JobStatus]:
        rec = self.jobs.get(request.id)
        yield self._status(rec)
        while not rec.terminal and context.is_active():
            nxt = self.jobs.wait_for_change(rec.id, rec.version, WATCH_SLICE_S)
            if nxt.version != rec.version:
                yield self._status(nxt)
            rec = nxt

    def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.JobStatus:
        return self._status(self.jobs.request_cancel(request.id))

    def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        limit = min(request.limit or DEFAULT_JOB_LIMIT, MAX_JOB_LIMIT)
        recs = self.jobs.list(states=convert.job_states(request.states), limit=limit)
        return pb.ListJobsResponse(jobs=[self._status(r) for r in recs])

    def _status(self, rec: JobRecord) -> pb.JobStatus:
        results = []
        for artifact_id, name in zip(rec.results, rec.result_names, strict=False):
            try:
                results.append(convert.artifact_info(self.store.stat(artifact_id)))
            except ArtifactNotFound:  # deleted since the job finished: still say what it was
                results.append(pb.ArtifactInfo(id=artifact_id, name=name, source_job=rec.id))
        return convert.job_status(rec, results)
