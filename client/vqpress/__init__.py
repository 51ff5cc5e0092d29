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
    JobState,
    JobStatus,
    QuantizeConfig,
    Splats,
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
    "Job",
    "JobState",
    "JobStatus",
    "MissingDependencyError",
    "QuantizeConfig",
    "Splats",
    "TlsConfig",
    "VqpressError",
    "__version__",
    "load_cameras_json",
]
