"""vqpress client: a thin SDK (grpcio, protobuf, numpy) for the vqpress service, and a numpy-only .vqp reader.

import vqpress
with vqpress.Client("localhost:50051") as c:
    job = c.quantize("scene.ply", vqpress.QuantizeConfig(preset="high_ratio"))
    job.wait()
    job.download_results("out/")
"""

from ._transport import CHUNK_BYTES, MAX_MESSAGE_BYTES, TlsConfig
from .client import Client, Job
from .errors import MissingDependencyError, VqpressError
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
    Splats,
    SplatTrainConfig,
    VqadGridConfig,
    load_cameras_json,
)

__version__ = "0.1.0"

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
    "JobState",
    "JobStatus",
    "NeuralField",
    "MissingDependencyError",
    "QatConfig",
    "QuantizeConfig",
    "SplatTrainConfig",
    "Splats",
    "TlsConfig",
    "VqadGridConfig",
    "VqpressError",
    "__version__",
    "load_cameras_json",
]
