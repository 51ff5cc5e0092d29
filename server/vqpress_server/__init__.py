"""vqpress server: the compression engine (core), job queue (jobs), artifact store and gRPC layer (rpc)."""

from vqpress._version import __version__  # one version for the client and the server

__all__ = ["__version__"]
