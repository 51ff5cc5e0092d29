"""The vqpress SDK for asyncio (grpc.aio): the same surface as ``vqpress.Client`` and ``vqpress.Job``,
with coroutines and async iterators.

    import asyncio, vqpress.aio

    async def main():
        async with vqpress.aio.Client("localhost:50051") as client:
            jobs = [await client.quantize(p) for p in ("a.ply", "b.ply")]
            done = await asyncio.gather(*(j.wait() for j in jobs))

Requests are built by the same functions as the blocking client's (``vqpress.client``); only the
calls differ. Errors are ``VqpressError`` (``JobFailed``, ``JobCancelled``, ``JobTimeout``) as there.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np

from . import _transport, digests
from .client import (
    _RETRY_CODES,
    _RETRY_WAIT_S,
    _STATE_TO_PB,
    Encoding,
    ExportFormatName,
    Source,
    _check_digest_function,
    _check_finetune,
    _check_taken,
    _checked_id,
    _digest_plan,
    _export_fields,
    _finetune_pb,
    _given_id,
    _header,
    _id,
    _info,
    _init_plan,
    _quantize_fields,
    _render_fields,
    _rendered,
    _source_plan,
    _status,
    _train_which,
    _umask,
    guess_kind,
)
from .errors import JobCancelled, JobFailed, JobTimeout, VqpressError, invalid
from .png import decode_png, to_rgb
from .types import (
    ArtifactInfo,
    ArtifactRef,
    Camera,
    ExportOptions,
    FieldQuantizeConfig,
    FieldTrainConfig,
    JobState,
    JobStatus,
    QuantizeConfig,
    ServerInfo,
    SplatTrainConfig,
)
from .v1 import vqpress_pb2 as pb
from .v1 import vqpress_pb2_grpc as pb_grpc

T = TypeVar("T")


def _error(err: grpc.aio.AioRpcError) -> VqpressError:
    return VqpressError(err.code().name, err.details() or str(err))


async def _call(aw: Awaitable[T]) -> T:
    """Await a unary call, its gRPC error translated (the one place for this module)."""
    try:
        return await aw
    except grpc.aio.AioRpcError as err:
        raise _error(err) from None


class Client:
    """An asyncio connection to a vqpress server (see ``vqpress.Client`` for the arguments)."""

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
        self.digest_function = _check_digest_function(digest_function)  # as in vqpress.Client
        options = list(_transport.CHANNEL_OPTIONS)
        if tls is not None:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.aio.secure_channel(address, tls.credentials(), options=options)
        else:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        self._md = (("authorization", f"Bearer {token}"),) if token else None
        self._stub = pb_grpc.VqpressStub(self._channel)
        self._digests: tuple[str, bool, tuple[str, ...]] | None = None  # as Client._digests, asked once

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- health ------------------------------------------------------------------------
    async def health(self, service: str = "") -> str:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        resp = await _call(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    async def server_info(self) -> ServerInfo:
        m = await _call(self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=self.timeout, metadata=self._md))
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

    async def _server_digests(self) -> tuple[str, bool, tuple[str, ...]]:
        """As ``Client._server_digests``: the function to name uploads by, whether the digest may
        come last, and the functions the server takes."""
        if self._digests is None:
            info = await self.server_info()
            self._digests = _digest_plan(self.digest_function, info)
        return self._digests

    # -- artifacts ---------------------------------------------------------------------
    async def stat(self, ref: ArtifactRef | str) -> ArtifactInfo:
        req = pb.StatArtifactRequest(id=_id(ref))
        return _info(await _call(self._stub.StatArtifact(req, timeout=self.timeout, metadata=self._md)))

    async def _known(self, artifact_id: str, size: int) -> ArtifactInfo | None:
        try:
            info = await self.stat(artifact_id)
        except VqpressError as e:
            if e.code == "NOT_FOUND":
                return None
            raise
        return info if info.size == size else None

    async def upload(
        self,
        path: str | os.PathLike,
        kind: str | None = None,
        *,
        name: str | None = None,
        digest: str | None = None,
        sha256: str | None = None,
        hash_first: bool = True,
    ) -> ArtifactInfo:
        """Store a file; ``digest``, ``sha256`` and ``hash_first`` as in ``Client.upload`` (nothing is
        sent when the server already holds the content, except with ``hash_first=False``: one read,
        digest last)."""
        path = Path(path)
        artifact_id = _given_id(digest, sha256)
        try:
            size = path.stat().st_size
            function, digest_last, taken = await self._server_digests()
            if artifact_id is not None:
                _check_taken(digests.function_of(artifact_id), taken)
            elif not hash_first and digest_last:
                kind = guess_kind(path) if kind is None else kind
                return await self._upload_hashing(path, name or path.name, size, kind, function)
            else:
                artifact_id = await asyncio.to_thread(digests.id_of_file, path, function)
        except OSError as e:
            raise invalid(f"{path}: cannot read: {e.strerror or e}") from None
        known = await self._known(artifact_id, size)
        if known is not None:
            return known
        header = _header(name or path.name, size, artifact_id, guess_kind(path) if kind is None else kind)

        async def requests() -> AsyncIterator[pb.UploadArtifactRequest]:
            yield pb.UploadArtifactRequest(header=header)
            with open(path, "rb", buffering=0) as f:
                while chunk := await asyncio.to_thread(f.read, _transport.CHUNK_BYTES):
                    yield pb.UploadArtifactRequest(chunk=chunk)

        return _info(await _call(self._stub.UploadArtifact(requests(), metadata=self._md)))

    async def _upload_hashing(self, path: Path, name: str, size: int, kind: str, function: str) -> ArtifactInfo:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, after the call
        h = digests.new(function)

        def read_and_hash() -> bytes:
            chunk = f.read(_transport.CHUNK_BYTES)
            h.update(chunk)
            return chunk

        async def requests() -> AsyncIterator[pb.UploadArtifactRequest]:
            header = pb.UploadHeader(name=name, size=size, digest="", kind=kind, digest_function=function)
            yield pb.UploadArtifactRequest(header=header)
            while chunk := await asyncio.to_thread(read_and_hash):
                yield pb.UploadArtifactRequest(chunk=chunk)
            yield pb.UploadArtifactRequest(digest=h.hexdigest())

        try:
            return _info(await _call(self._stub.UploadArtifact(requests(), metadata=self._md)))
        finally:
            f.close()

    async def upload_bytes(self, data: bytes, name: str, kind: str | None = None) -> ArtifactInfo:
        artifact_id = digests.id_of_bytes(data, (await self._server_digests())[0])
        known = await self._known(artifact_id, len(data))
        if known is not None:
            return known
        header = _header(name, len(data), artifact_id, guess_kind(name) if kind is None else kind)

        async def requests() -> AsyncIterator[pb.UploadArtifactRequest]:
            yield pb.UploadArtifactRequest(header=header)
            for i in range(0, len(data), _transport.CHUNK_BYTES):
                yield pb.UploadArtifactRequest(chunk=data[i : i + _transport.CHUNK_BYTES])

        return _info(await _call(self._stub.UploadArtifact(requests(), metadata=self._md)))

    async def _chunks(self, ref: ArtifactRef | str) -> AsyncIterator[bytes]:
        try:
            async for msg in self._stub.DownloadArtifact(pb.DownloadArtifactRequest(id=_id(ref)), metadata=self._md):
                yield msg.data
        except grpc.aio.AioRpcError as err:
            raise _error(err) from None

    async def download(self, ref: ArtifactRef | str, path: str | os.PathLike) -> Path:
        """Write an artifact to ``path`` (or into a directory under its stored name), checked against
        its size and digest (its id) and renamed into place; the file's mode follows the umask."""
        info = await self.stat(ref)
        path = Path(path)
        if path.is_dir():
            path = path / (Path(info.name).name or digests.file_name(info.id))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            function = digests.function_of(info.id)
            h, n = digests.new(function), 0
            with os.fdopen(fd, "wb") as f:
                async for chunk in self._chunks(info):
                    h.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
                    n += len(chunk)
            if n != info.size or digests.make_id(function, h.hexdigest()) != info.id:
                raise VqpressError(
                    "DATA_LOSS", f"download of {info.id} got {n} bytes with a different hash (expected {info.size})"
                )
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    async def download_bytes(self, ref: ArtifactRef | str) -> bytes:
        aid = _checked_id(ref)
        data = b"".join([c async for c in self._chunks(aid)])
        if digests.id_of_bytes(data, digests.function_of(aid)) != aid:
            raise VqpressError("DATA_LOSS", f"download of {aid} does not match its digest")
        return data

    async def list_artifacts(self, kind: str | None = None, limit: int = 1000) -> list[ArtifactInfo]:
        req = pb.ListArtifactsRequest(kind=kind or "", limit=limit)
        resp = await _call(self._stub.ListArtifacts(req, timeout=self.timeout, metadata=self._md))
        return [_info(a) for a in resp.artifacts]

    async def delete(self, ref: ArtifactRef | str) -> None:
        req = pb.DeleteArtifactRequest(id=_id(ref))
        await _call(self._stub.DeleteArtifact(req, timeout=self.timeout, metadata=self._md))

    # -- work --------------------------------------------------------------------------
    async def _put(self, upload: str | os.PathLike | tuple[bytes, str, str]) -> ArtifactInfo:
        return await (self.upload(upload) if isinstance(upload, (str, os.PathLike)) else self.upload_bytes(*upload))

    async def _source(self, source: Source) -> dict[str, Any]:
        fields, upload = _source_plan(source)
        return fields if upload is None else {"artifact": pb.ArtifactRef(id=(await self._put(upload)).id)}

    async def quantize(
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
        fields = _quantize_fields(config, cameras, background, evaluate)
        if _check_finetune(config, dataset, finetune_steps):
            if not isinstance(dataset, ArtifactRef):
                dataset = await self.upload(dataset, kind=guess_kind(dataset) or "dataset")  # type: ignore[arg-type]
            fields["finetune"] = _finetune_pb(dataset, finetune_steps)
        req = pb.QuantizeRequest(**fields, **(await self._source(source)))
        return Job(self, (await _call(self._stub.Quantize(req, timeout=self.timeout, metadata=self._md))).id)

    async def export(
        self,
        source: Source,
        format: ExportFormatName,
        config: QuantizeConfig | None = None,
        options: ExportOptions | None = None,
    ) -> Job:
        req = pb.ExportRequest(**_export_fields(format, config, options), **(await self._source(source)))
        return Job(self, (await _call(self._stub.Export(req, timeout=self.timeout, metadata=self._md))).id)

    async def train(
        self,
        dataset: str | os.PathLike | ArtifactRef,
        config: SplatTrainConfig | FieldTrainConfig | None = None,
        *,
        init: Source | None = None,
    ) -> Job:
        which = _train_which(dataset, config, init)
        if not isinstance(dataset, ArtifactRef):
            dataset = await self.upload(dataset, kind=guess_kind(dataset) or "dataset")
        if init is not None:
            fields, upload = _init_plan(init)
            which["init"] = fields["artifact"] if upload is None else pb.ArtifactRef(id=(await self._put(upload)).id)
        req = pb.TrainRequest(dataset=pb.DatasetSource(archive=pb.ArtifactRef(id=dataset.id)), **which)
        return Job(self, (await _call(self._stub.Train(req, timeout=self.timeout, metadata=self._md))).id)

    async def submit_render(
        self,
        source: Source,
        cameras: Sequence[Camera],
        background: Sequence[float] = (1.0, 1.0, 1.0),
        encoding: Encoding = "png",
    ) -> Job:
        req = pb.RenderRequest(**_render_fields(cameras, background, encoding), **(await self._source(source)))
        return Job(self, (await _call(self._stub.SubmitRender(req, timeout=self.timeout, metadata=self._md))).id)

    async def render_iter(
        self,
        source: Source,
        cameras: Sequence[Camera],
        background: Sequence[float] = (1.0, 1.0, 1.0),
        encoding: Encoding = "png",
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[Camera, bytes | np.ndarray]]:
        req = pb.RenderRequest(**_render_fields(cameras, background, encoding), **(await self._source(source)))
        try:
            async for m in self._stub.Render(req, timeout=timeout, metadata=self._md):
                yield _rendered(m, cameras)
        except grpc.aio.AioRpcError as err:
            raise _error(err) from None

    async def render(
        self,
        source: Source,
        cameras: Sequence[Camera],
        background: Sequence[float] = (1.0, 1.0, 1.0),
        encoding: Encoding = "png",
        *,
        timeout: float | None = None,
    ) -> list[np.ndarray]:
        out = []
        async for _, img in self.render_iter(source, cameras, background, encoding, timeout=timeout):
            out.append(to_rgb(decode_png(img)) if isinstance(img, bytes) else img)
        if len(out) != len(cameras):
            raise VqpressError("DATA_LOSS", f"server sent {len(out)} images for {len(cameras)} cameras")
        return out

    # -- jobs --------------------------------------------------------------------------
    async def job(self, id: str) -> Job:
        job = Job(self, id)
        await job.status()
        return job

    async def jobs(self, states: Iterable[JobState | str] | None = None, limit: int = 100) -> list[JobStatus]:
        try:
            pb_states = [_STATE_TO_PB[JobState(s)] for s in states or ()]
        except ValueError as e:
            raise invalid(f"{e}; states are {[s.value for s in JobState]}") from None
        req = pb.ListJobsRequest(states=pb_states, limit=limit)
        resp = await _call(self._stub.ListJobs(req, timeout=self.timeout, metadata=self._md))
        return [_status(j) for j in resp.jobs]


class Job:
    """A job on the server (asyncio): ``status``, ``watch``, ``wait``, ``cancel``, results."""

    def __init__(self, client: Client, id: str) -> None:
        self._client = client
        self.id = id

    def __repr__(self) -> str:
        return f"aio.Job({self.id!r})"

    async def status(self) -> JobStatus:
        c = self._client
        return _status(await _call(c._stub.GetJob(pb.GetJobRequest(id=self.id), timeout=c.timeout, metadata=c._md)))

    async def _stream(self, timeout: float | None) -> AsyncIterator[JobStatus]:
        c = self._client
        call = c._stub.WatchJob(pb.WatchJobRequest(id=self.id), timeout=timeout, metadata=c._md)
        try:
            async for m in call:
                yield _status(m)
        finally:
            call.cancel()

    async def watch(self, timeout: float | None = None) -> AsyncIterator[JobStatus]:
        """The status now and after every change, until the job is terminal."""
        try:
            async for st in self._stream(timeout):
                yield st
                if st.terminal:
                    return
        except grpc.aio.AioRpcError as err:
            raise _error(err) from None

    async def wait(
        self,
        timeout: float | None = None,
        *,
        on_status: Callable[[JobStatus], None] | None = None,
        on_retry: Callable[[VqpressError], None] | None = None,
        unavailable_timeout: float | None = None,
    ) -> JobStatus:
        """As ``vqpress.Job.wait``: the SUCCEEDED status, else JobFailed / JobCancelled / JobTimeout;
        re-attaches across server restarts."""
        deadline = None if timeout is None else time.monotonic() + timeout
        lost_since: float | None = None
        pause = _RETRY_WAIT_S[0]
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise JobTimeout(self.id, timeout)
            try:
                async for st in self._stream(remaining):
                    lost_since, pause = None, _RETRY_WAIT_S[0]
                    if on_status is not None:
                        on_status(st)
                    if st.terminal:
                        if st.state is JobState.FAILED:
                            raise JobFailed(self.id, st.error)
                        if st.state is JobState.CANCELLED:
                            raise JobCancelled(self.id, st.error)
                        return st
                if on_retry is not None:
                    on_retry(VqpressError("UNAVAILABLE", "the server ended the status stream before the job ended"))
            except grpc.aio.AioRpcError as err:
                code = err.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise JobTimeout(self.id, timeout) from None
                if code not in _RETRY_CODES:
                    raise _error(err) from None
                now = time.monotonic()
                lost_since = now if lost_since is None else lost_since
                if unavailable_timeout is not None and now - lost_since > unavailable_timeout:
                    raise VqpressError(
                        code.name, f"lost the server while waiting for job {self.id}: {err.details()}"
                    ) from None
                if on_retry is not None:
                    on_retry(_error(err))
            await asyncio.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(2 * pause, _RETRY_WAIT_S[1])

    async def cancel(self) -> JobStatus:
        c = self._client
        req = pb.CancelJobRequest(id=self.id)
        return _status(await _call(c._stub.CancelJob(req, timeout=c.timeout, metadata=c._md)))

    async def results(self) -> list[ArtifactInfo]:
        return (await self.status()).results

    async def download_results(self, directory: str | os.PathLike) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        return [
            await self._client.download(r, d / (Path(r.name).name or digests.file_name(r.id)))
            for r in await self.results()
        ]


__all__ = ["Client", "Job"]
