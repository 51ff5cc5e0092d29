"""The handler of each job spec type: the worker rebuilds a job's spec (``specs.spec_from_json``)
and runs ``HANDLERS[type(spec)]`` on it. Each handler takes its typed spec, runs the core and
leaves its result files in the job's scratch folder (``results.HandlerResult``).

    QuantizeSplatsSpec, ExportSplatsSpec, RenderSplatsSpec   splat_handler.py
    TrainSplatsSpec                                          train_handler.py
    TrainFieldSpec, QuantizeFieldSpec, RenderFieldSpec,
    ExportFieldSpec, BuildFieldSpec                          field_handler.py

These modules import torch: the worker imports this one when it runs its first job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .context import JobContext
from .field_handler import run_build_field, run_export_field, run_quantize_field, run_render_field, run_train_field
from .results import HandlerResult
from .specs import (
    BuildFieldSpec,
    ExportFieldSpec,
    ExportSplatsSpec,
    JobSpec,
    QuantizeFieldSpec,
    QuantizeSplatsSpec,
    RenderFieldSpec,
    RenderSplatsSpec,
    TrainFieldSpec,
    TrainSplatsSpec,
)
from .splat_handler import run_export_splats, run_quantize_splats, run_render_splats
from .train_handler import run_train_splats

Handler = Callable[[JobContext, Any], HandlerResult]

HANDLERS: dict[type[JobSpec], Handler] = {
    QuantizeSplatsSpec: run_quantize_splats,
    QuantizeFieldSpec: run_quantize_field,
    ExportSplatsSpec: run_export_splats,
    ExportFieldSpec: run_export_field,
    RenderSplatsSpec: run_render_splats,
    RenderFieldSpec: run_render_field,
    TrainSplatsSpec: run_train_splats,
    TrainFieldSpec: run_train_field,
    BuildFieldSpec: run_build_field,
}


def run_spec(ctx: JobContext, spec: JobSpec) -> HandlerResult:
    """Run the handler of ``spec``'s type."""
    return HANDLERS[type(spec)](ctx, spec)


__all__ = ["HANDLERS", "Handler", "run_spec"]
