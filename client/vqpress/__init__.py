"""vqpress client: a thin SDK (grpcio, protobuf, numpy) for the vqpress service, and a numpy-only .vqp reader.

import vqpress
with vqpress.Client("localhost:50051") as c:
    job = c.quantize("scene.ply", vqpress.QuantizeConfig(preset="high_ratio"))
    job.wait()
    job.download_results("out/")
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import JobCancelled, JobFailed, JobTimeout, MissingDependencyError, VqpressError
from .types import (
    ArtifactInfo,
    ArtifactRef,
    Camera,
    DecoderConfig,
    DenseGridConfig,
    ExportOptions,
    FieldQuantizeConfig,
    FieldTrainConfig,
    HashGridConfig,
    JobState,
    JobStatus,
    NeuralField,
    QatConfig,
    QuantizeConfig,
    ServerInfo,
    Splats,
    SplatTrainConfig,
    VqadGridConfig,
    load_cameras_json,
)

if TYPE_CHECKING:
    from ._transport import CHUNK_BYTES, MAX_MESSAGE_BYTES, TlsConfig
    from .client import Client, Job

# The gRPC client loads on first use, so that `import vqpress.vqp` (the numpy decoder) and the
# dataclasses work where grpcio is missing or older than the generated code needs.
_LAZY = {
    "CHUNK_BYTES": "._transport",
    "MAX_MESSAGE_BYTES": "._transport",
    "TlsConfig": "._transport",
    "Client": ".client",
    "Job": ".client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vqpress' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CHUNK_BYTES",
    "MAX_MESSAGE_BYTES",
    "ArtifactInfo",
    "ArtifactRef",
    "Camera",
    "Client",
    "DecoderConfig",
    "DenseGridConfig",
    "ExportOptions",
    "FieldQuantizeConfig",
    "FieldTrainConfig",
    "HashGridConfig",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobTimeout",
    "JobState",
    "JobStatus",
    "NeuralField",
    "MissingDependencyError",
    "QatConfig",
    "QuantizeConfig",
    "ServerInfo",
    "SplatTrainConfig",
    "Splats",
    "TlsConfig",
    "VqadGridConfig",
    "VqpressError",
    "__version__",
    "load_cameras_json",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
