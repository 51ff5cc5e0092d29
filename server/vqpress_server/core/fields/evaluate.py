"""Seeing and scoring a stored field: one view at a camera, PSNR/SSIM over views.

A field is viewed as its manifest says (``FieldExtra``): a 2D image field at each camera's
width x height pixel grid (the pose is ignored); a 3D field volume-rendered inside its scene box
(contracted beyond it when unbounded), with the occupancy-grid marcher when it was trained with
it, on the given background, else the one it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..metrics import psnr, ssim
from ..render.cameras import Camera
from ..render.volume import OccupancyGrid
from .manifest import FieldExtra
from .model import NeuralField
from .train import SceneBox, field_occupancy, render_field

RGB = tuple[float, float, float]
MAX_EVAL_VIEWS = 16  # held-out views a training report renders


def scene_box(extra: FieldExtra) -> SceneBox:
    """The box a 3D field lives in (SceneBox's default when none is stored)."""
    if extra.box is None:
        return SceneBox()
    return SceneBox(extra.box[0], extra.box[1], extra.unbounded is True)


def occupancy(model: NeuralField, extra: FieldExtra) -> OccupancyGrid | None:
    """The occupancy grid a marched 3D field renders with (estimated once for many views)."""
    if model.config.dims != 3 or extra.march_steps is None:
        return None
    return field_occupancy(model, scene_box(extra), march_steps=extra.march_steps)


def field_view(
    model: NeuralField,
    extra: FieldExtra,
    cam: Camera,
    background: RGB | None = None,
    occ: OccupancyGrid | None = None,
) -> torch.Tensor:  # [H, W, 3]
    """The field seen by one camera (``occ``: ``occupancy(model, extra)``, passed in for many views)."""
    if model.config.dims == 2:
        return model.image_pixels(cam.height, cam.width)
    bg = background if background is not None else extra.background
    if extra.march_steps is not None and occ is None:
        occ = occupancy(model, extra)
    return render_field(
        model, cam, box=scene_box(extra), samples_per_ray=extra.samples, background=bg or (0.0, 0.0, 0.0),
        march_steps=extra.march_steps, occupancy=occ,
    )  # fmt: skip


def score_views(
    model: NeuralField,
    extra: FieldExtra,
    views: Sequence[tuple[torch.Tensor, Camera]],  # (reference image [H, W, 3], camera) pairs
    background: RGB | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """Mean (PSNR, SSIM) of the field's views against reference images; ``progress(i)`` before view i."""
    assert views, "no views to score"
    occ = occupancy(model, extra)
    ps, ss = [], []
    for i, (ref, cam) in enumerate(views):
        if progress is not None:
            progress(i)
        out = field_view(model, extra, cam, background, occ).cpu()
        ps.append(psnr(out, ref))
        ss.append(ssim(out, ref))
    return sum(ps) / len(ps), sum(ss) / len(ss)


def score_image(model: NeuralField, image: torch.Tensor) -> tuple[float, float, torch.Tensor]:  # image [H, W, 3]
    """(PSNR, SSIM, the field's image) of a 2D field against the image it was trained on."""
    H, W = int(image.shape[0]), int(image.shape[1])
    out = model.image_pixels(H, W).cpu()  # [H, W, 3]
    return psnr(out, image), ssim(out, image), out


def compare_fields(
    reference: NeuralField, other: NeuralField, extra: FieldExtra, cams: Sequence[Camera], background: RGB | None
) -> tuple[float, float, str] | None:
    """(PSNR, SSIM, what was compared) of ``other`` against ``reference``'s own output: a 2D field's
    image at the size stored with it; a 3D field's renders at ``cams``. None when neither applies."""
    if reference.config.dims == 2 and extra.height is not None and extra.width is not None:
        H, W = extra.height, extra.width
        ref, got = reference.image_pixels(H, W), other.image_pixels(H, W)
        return psnr(got, ref), ssim(got, ref), f"source field's image ({W}x{H})"
    if reference.config.dims == 3 and cams:
        ps, ss = [], []
        for cam in cams:
            ref, got = field_view(reference, extra, cam, background), field_view(other, extra, cam, background)
            ps.append(psnr(got, ref))
            ss.append(ssim(got, ref))
        return sum(ps) / len(ps), sum(ss) / len(ss), f"source field's renders at {len(cams)} camera(s)"
    return None


__all__ = ["MAX_EVAL_VIEWS", "compare_fields", "field_view", "occupancy", "scene_box", "score_image", "score_views"]
