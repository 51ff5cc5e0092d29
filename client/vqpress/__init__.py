"""vqpress client: a thin SDK (grpcio, protobuf, numpy) for the vqpress service, and a numpy-only .vqp reader.

import vqpress
with vqpress.Client("localhost:50051") as c:
    job = c.quantize("scene.ply", vqpress.QuantizeConfig(preset="high_ratio"))
    job.wait()
    job.download_results("out/")
"""

from ._transport import CHUNK_BYTES, MAX_MESSAGE_BYTES, TlsConfig
from ._version import __version__
from .client import Client, Job
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
