"""A neural field from a config and named tensors sent by a client (untrusted input).

The tensors follow the field's state dict: ``NeuralField(config).state_dict()`` names them, and
``FitResult.field.state_dict()`` of a training run is a valid set. Everything is checked before
anything big is allocated: the names, the total size, the dtypes, the shapes and the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, NonFiniteError, VqpressInputError
from .config import field_config_from_spec
from .model import NeuralField

MAX_FIELD_BYTES = 1 << 30  # largest field accepted, sent or as built from its config: 1 GiB of tensor data
MAX_LISTED_NAMES = 12  # names an error message lists before it says "and N more"
_COLOR_PREFIX = "color_mlp."  # only 3D fields have a color MLP


def field_dims(names: Iterable[str]) -> int:
    """2 or 3: a 3D (radiance) field has ``color_mlp.*`` tensors, a 2D (image) field has none."""
    return 3 if any(n.startswith(_COLOR_PREFIX) for n in names) else 2


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    more = len(names) - MAX_LISTED_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def _as_state_tensor(name: str, a: np.ndarray, want: torch.Tensor) -> torch.Tensor:
    """``a`` converted to the dtype of the model's tensor ``want``, or a VqpressInputError saying why not."""
    if want.dtype.is_floating_point:
        if a.dtype.kind != "f":
            raise VqpressInputError(f"tensor {name!r} must hold floats (float16/32/64), got {a.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):  # out of float32 range -> inf, refused below
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise NonFiniteError(
                f"tensor {name!r} has {bad} non-finite value(s) (NaN or inf, or beyond float32 range); "
                "send finite values"
            )
        return t
    if a.dtype.kind not in "biu":
        raise VqpressInputError(f"tensor {name!r} must hold integers ({want.dtype}), got {a.dtype}")
    info = torch.iinfo(want.dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise VqpressInputError(f"tensor {name!r} has values outside the range of {want.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a)).to(want.dtype)


def field_from_tensors(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> NeuralField:
    """A CPU NeuralField (eval mode) from its config and its state dict as numpy arrays.

    ``config`` is the spec dict of a FieldConfig without dims (``{"grid": {"kind", set fields},
    "decoder": {set fields}}``; unset fields take FieldConfig's defaults, the grid kind "vqad").
    dims is inferred from the tensors: a 3D radiance field has ``color_mlp.*`` tensors, a 2D image
    field has none. ``tensors`` maps every name of ``NeuralField(config).state_dict()`` to its
    values: floats (float16/32/64, stored as float32) for parameters, integers for integer buffers.
    A tensor a fresh model holds empty (the logits of a sparse VQ-AD level
    before allocation) takes its size from the state; the grid checks that it is consistent.

    Raises ConfigError for a bad config or a field over MAX_FIELD_BYTES (1 GiB), VqpressInputError
    naming the tensors for missing or unknown names, wrong dtypes or shapes, and NonFiniteError
    naming the tensor for NaN/inf.
    """
    if not isinstance(tensors, Mapping) or not tensors:
        raise VqpressInputError("the field has no tensors; send its state dict (names -> arrays)")
    for name, a in tensors.items():
        if not isinstance(name, str) or not isinstance(a, np.ndarray):
            raise VqpressInputError(f"tensor {str(name)[:80]!r} must be a numpy array named by a string")
    sent = sum(a.nbytes for a in tensors.values())
    if sent > MAX_FIELD_BYTES:
        raise VqpressInputError(f"the field's tensors hold {sent} bytes, more than the {MAX_FIELD_BYTES} accepted")

    dims = field_dims(tensors)
    has = "has" if dims == 3 else "has no"
    cfg = field_config_from_spec(config, dims, f"the tensors {has} color_mlp.* (a {dims}D field)")
    with torch.device("meta"):  # the layout, without allocating it
        model = NeuralField(cfg)
    expected = model.state_dict()
    size = sum(t.numel() * t.element_size() for t in expected.values())
    if size > MAX_FIELD_BYTES:
        raise ConfigError(
            f"the field config describes {size / 2**30:.1f} GiB of tensors, more than "
            f"{MAX_FIELD_BYTES / 2**30:.0f} GiB; use fewer levels, a lower max_resolution or fewer features"
        )
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected))
    if missing or unknown:
        parts = [f"missing {_listed(missing)}"] if missing else []
        parts += [f"unknown {_listed(unknown)}"] if unknown else []
        raise VqpressInputError(
            f"the tensors do not match a {cfg.dims}D field of this config ({'; '.join(parts)}); "
            f"send exactly the names of its state dict: {_listed(sorted(expected))}"
        )

    state: dict[str, torch.Tensor] = {}
    for name, want in expected.items():
        a = tensors[name]
        resizable = 0 in want.shape  # an unallocated sparse level: the grid checks the saved size
        if not resizable and tuple(a.shape) != tuple(want.shape):
            raise VqpressInputError(
                f"tensor {name!r} has shape {list(a.shape)}, expected {list(want.shape)} for this field config"
            )
        if resizable and (a.ndim != want.ndim or any(g != w for g, w in zip(a.shape, want.shape, strict=True) if w)):
            raise VqpressInputError(
                f"tensor {name!r} has shape {list(a.shape)}, expected {['n' if w == 0 else w for w in want.shape]}"
            )
        state[name] = _as_state_tensor(name, a, want)

    model = model.to_empty(device="cpu")  # every tensor is overwritten by the strict load below
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as e:
        raise VqpressInputError(f"the tensors do not fit the field: {e}") from None
    return model.eval()
