"""Content-addressed artifact store (files named by their BLAKE3 or sha256 digest, with JSON metadata)."""

from .store import (
    ArtifactInfo,
    ArtifactIntegrityError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreFull,
    ArtifactTooLarge,
    Upload,
    kind_from_name,
    validate_id,
)

__all__ = [
    "ArtifactInfo",
    "ArtifactIntegrityError",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactStoreFull",
    "ArtifactTooLarge",
    "Upload",
    "kind_from_name",
    "validate_id",
]
