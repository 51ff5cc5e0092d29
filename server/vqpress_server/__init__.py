"""vqpress server: the compression engine (core), job queue (jobs), artifact store and gRPC layer (rpc)."""

__version__ = "0.1.0"
