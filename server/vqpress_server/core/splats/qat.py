"""Compact3D quantization-aware training (QAT): codebooks that follow the Gaussians while they train.

Four attributes of every Gaussian are vector-quantized, each with its own codebook:
``dc`` (sh0, 3-d), ``sh`` (shN flattened, 3 * ((d+1)^2 - 1)-d), ``scale`` (log scales, 3-d) and
``rot`` (the normalized quaternion on the w >= 0 hemisphere, 4-d). From ``QatConfig.start_step``
on, the forward pass renders ``x - x.detach() + codebook[idx]`` (a straight-through estimator:
the codebook value forward, the gradient to the raw value backward), and:

- every ``reassign_every`` steps (until ``freeze_step``) the assignment is redone with
  ``kmeans_iters`` Lloyd iterations warm-started from the current centroids, with the engine's
  exact assignment (``core.vq.kmeans.kmeans(..., init=)``); a cluster left empty is re-seeded at
  the point farthest from its centroid;
- on every other step the centroids move to the mean of their current members
  (``core.vq.kmeans.update_centroids``), so they follow the raw values the optimizer moves;
- after ``freeze_step`` assignments stay fixed; centroids still follow their members.

The .vqp written at the end holds these codebooks and indices (not a fresh post-hoc k-means).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..vq.kmeans import assign, kmeans, update_centroids
from .model import GaussianSplats, num_sh_rest
from .quantize import ATTRIBUTES, QuantizeConfig, QuantizedSplats, pack_geometry
from .train_config import MAX_KMEANS_ITERS, MAX_TRAIN_CODEBOOK, QatConfig  # noqa: F401  (re-exported)


# -- the vectors each codebook clusters -----------------------------------------------------------
def attribute_vectors(
    sh0: torch.Tensor,  # [N, 1, 3]
    shN: torch.Tensor,  # [N, R, 3]
    scales: torch.Tensor,  # [N, 3] log
    quats: torch.Tensor,  # [N, 4] any norm
) -> dict[str, torch.Tensor]:  # attr -> [N, d], differentiable
    N = sh0.shape[0]
    q = torch.nn.functional.normalize(quats, dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)  # q and -q are one rotation: quantize one hemisphere
    out = {"dc": sh0.reshape(N, 3)}
    if shN.shape[1]:
        out["sh"] = shN.reshape(N, -1)
    out["scale"] = scales
    out["rot"] = q
    return out


# -- the codebook state -------------------------------------------------------------------------
@dataclass
class QatState:
    """What QAT is doing: codebooks and the index of every Gaussian into each (part of a checkpoint)."""

    codebooks: dict[str, torch.Tensor] = field(default_factory=dict)  # attr -> [K, d] float32
    indices: dict[str, torch.Tensor] = field(default_factory=dict)  # attr -> [N] int64
    kmeans_seconds: float = 0.0  # time spent in k-means (start + re-assignments), synchronized

    @property
    def active(self) -> bool:
        return bool(self.codebooks)

    def state_dict(self) -> dict[str, object]:
        return {
            "codebooks": {k: v.detach().cpu() for k, v in self.codebooks.items()},
            "indices": {k: v.detach().cpu() for k, v in self.indices.items()},
            "kmeans_seconds": self.kmeans_seconds,
        }

    @classmethod
    def from_state_dict(cls, d: dict, device: torch.device) -> QatState:
        return cls(
            {k: v.to(device) for k, v in d["codebooks"].items()},
            {k: v.to(device) for k, v in d["indices"].items()},
            float(d["kmeans_seconds"]),
        )

    def _timed(self, device: torch.device) -> _Timer:
        return _Timer(self, device)

    def start(self, vectors: dict[str, torch.Tensor], config: QatConfig, seed: int) -> None:
        """First k-means of every attribute (the engine's k-means++ and Lloyd)."""
        sizes = config.codebook_sizes()
        with self._timed(next(iter(vectors.values())).device):
            for i, (attr, x) in enumerate(vectors.items()):
                res = kmeans(x.detach().float().contiguous(), sizes[attr], iters=config.kmeans_iters, seed=seed + i)
                self.codebooks[attr] = res.centroids
                self.indices[attr] = res.labels

    def reassign(self, vectors: dict[str, torch.Tensor], config: QatConfig) -> None:
        """Full re-assignment: Lloyd iterations warm-started from the current centroids."""
        with self._timed(next(iter(vectors.values())).device):
            for attr, x in vectors.items():
                cb = self.codebooks[attr]
                res = kmeans(x.detach().float().contiguous(), cb.shape[0], iters=config.kmeans_iters, init=cb)
                self.codebooks[attr], self.indices[attr] = res.centroids, res.labels

    def assign_only(self, vectors: dict[str, torch.Tensor]) -> None:
        """Nearest centroid for every Gaussian (after densification changed N or moved Gaussians)."""
        with self._timed(next(iter(vectors.values())).device):
            for attr, x in vectors.items():
                self.indices[attr] = assign(x.detach().float().contiguous(), self.codebooks[attr])

    def follow(self, vectors: dict[str, torch.Tensor]) -> None:
        """Centroids move to the mean of their current members (empty ones keep their value)."""
        for attr, x in vectors.items():
            self.codebooks[attr] = update_centroids(x.detach().float(), self.indices[attr], self.codebooks[attr])

    def select(self, keep: torch.Tensor) -> None:  # [N] bool
        """Keep the indices of the Gaussians that survive a prune."""
        self.indices = {k: v[keep] for k, v in self.indices.items()}

    def quantize(self, vectors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Straight-through values: codebook entries forward, identity gradient to the raw vectors."""
        out = {}
        for attr, x in vectors.items():
            out[attr] = x - x.detach() + self.codebooks[attr][self.indices[attr]].to(x.dtype)
        return out


class _Timer:
    def __init__(self, state: QatState, device: torch.device) -> None:
        self.state, self.device = state, device

    def __enter__(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.state.kmeans_seconds += time.perf_counter() - self.t0


def quantized_scene(
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3]
    sh0: torch.Tensor,  # [N, 1, 3]
    shN: torch.Tensor,  # [N, R, 3]
    state: QatState,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # quats, scales, sh0, shN
    """The four quantized attributes in the scene's layout (straight-through when inputs need grad)."""
    N, R = sh0.shape[0], shN.shape[1]
    q = state.quantize(attribute_vectors(sh0, shN, scales, quats))
    return q["rot"], q["scale"], q["dc"].reshape(N, 1, 3), (q["sh"].reshape(N, R, 3) if R else shN)


# -- the .vqp of the trained codebooks --------------------------------------------------------------
def encode_vqp(splats: GaussianSplats, state: QatState, config: QatConfig, seed: int) -> bytes:
    """The .vqp of a QAT scene: its positions and opacities, and the QAT codebooks and indices.

    Positions and opacities go through the post-hoc packer (``quantize.pack_geometry``: Morton
    order, fixed16 positions, uint8 opacities), the codebooks and indices are QAT's own, so
    ``decode_vqp_splats`` and the client read it like any quantized scene.
    """
    N = splats.num_gaussians
    assert all(v.shape == (N,) for v in state.indices.values()), {k: v.shape for k, v in state.indices.items()}
    sizes = {a: int(cb.shape[0]) for a, cb in state.codebooks.items()}
    qconfig = QuantizeConfig(
        dc_codebook=sizes["dc"],
        sh_codebook=sizes.get("sh", config.sh_codebook),
        scale_codebook=sizes["scale"],
        rot_codebook=sizes["rot"],
        kmeans_iters=config.kmeans_iters,
        seed=seed,
    ).validate()
    geo = pack_geometry(splats.to("cpu"), qconfig)
    order = geo.order.cpu()
    n_rest = num_sh_rest(splats.sh_degree)
    codebooks: dict[str, np.ndarray] = {}
    indices: dict[str, np.ndarray] = {}
    for attr in ATTRIBUTES:
        if attr not in state.codebooks:
            continue
        cb = state.codebooks[attr].detach().float().cpu().clamp(-65504.0, 65504.0).numpy().astype(np.float16)
        codebooks[attr] = cb.reshape(cb.shape[0], n_rest, 3) if attr == "sh" else cb
        indices[attr] = state.indices[attr].cpu()[order].numpy().astype(np.uint32)
    q = QuantizedSplats(
        config=qconfig,
        num_gaussians=N,
        sh_degree=splats.sh_degree,
        box_min=geo.box_min,
        box_max=geo.box_max,
        means=geo.means,
        opacities=geo.opacities,
        codebooks=codebooks,
        indices=indices,
        order=order.numpy(),
    )
    return q.to_vqp_bytes()


__all__ = ["ATTRIBUTES", "QatConfig", "QatState", "attribute_vectors", "encode_vqp", "quantized_scene"]
