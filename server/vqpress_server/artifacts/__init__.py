"""Content-addressed artifact store (sha256-named files with JSON metadata)."""

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
