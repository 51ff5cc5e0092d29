"""vqpress client: a thin SDK (grpcio, protobuf, numpy) for the vqpress service, and a numpy-only .vqp reader."""

__version__ = "0.1.0"
