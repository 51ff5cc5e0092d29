"""The .vqp container (defined once, in ``vqpress.vqp``), bit packing and entropy measures."""

from vqpress.vqp import MAGIC, VERSION, Section, VqpFile, VqpFormatError, read_vqp, write_vqp

from .bitpack import bits_for, pack_bits, pack_indices, unpack_bits, unpack_indices
from .entropy import entropy_bits

__all__ = [
    "MAGIC",
    "VERSION",
    "Section",
    "VqpFile",
    "VqpFormatError",
    "bits_for",
    "entropy_bits",
    "pack_bits",
    "pack_indices",
    "read_vqp",
    "unpack_bits",
    "unpack_indices",
    "write_vqp",
]
