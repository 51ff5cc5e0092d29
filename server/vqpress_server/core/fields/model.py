"""A neural field: multi-resolution grid + MLP decoder, for 2D images and 3D radiance fields.

2D: ``rgb = sigmoid(MLP(grid(xy)))`` with xy in [0, 1]^2 (x right, y down; pixel (i, j) sits at
((j + 0.5) / W, (i + 0.5) / H)).
3D: ``h = MLP(grid(p))``, ``density = exp(min(h[0], 15))`` (1/scene units; 0 outside the allocated
region of a sparse grid), and
``rgb = sigmoid(MLP_c(h[1:], SH(direction)))`` with p in [0, 1]^3 (the scene box mapped to the unit cube).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..render.sh import sh_basis
from .config import FieldConfig
from .grid import MultiResGrid, build_grid

MAX_LOG_DENSITY = 15.0


def sh_encoding(dirs: Tensor, degree: int) -> Tensor:  # dirs [B, 3] unit -> [B, (degree + 1)^2]
    """Real spherical harmonics of unit directions up to ``degree`` (0..3; 3 is Instant-NGP's
    16-term encoding), the splats' basis (``render.sh``)."""
    return sh_basis(degree, dirs)


def mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    """Linear-ReLU stack with ``layers`` hidden layers; no activation after the last Linear."""
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class NeuralField(nn.Module):
    """Grid + decoder. ``grid`` may be given (a baked or post-hoc compressed grid); else one is built."""

    def __init__(self, config: FieldConfig, grid: MultiResGrid | None = None, seed: int = 0) -> None:
        super().__init__()
        config.validate()
        self.config = config
        gen = torch.Generator().manual_seed(seed)
        self.grid = grid if grid is not None else build_grid(config.dims, config.grid, gen)
        dec = config.decoder
        torch.manual_seed(seed)  # nn.Linear initialisation
        if config.dims == 2:
            self.mlp = mlp(self.grid.out_dim, dec.hidden, dec.layers, 3)
            self.color_mlp: nn.Sequential | None = None
        else:
            self.mlp = mlp(self.grid.out_dim, dec.hidden, dec.layers, 1 + dec.geo_features)
            sh_dim = (dec.dir_degree + 1) ** 2
            self.color_mlp = mlp(dec.geo_features + sh_dim, dec.hidden, dec.color_layers, 3)
        # 3D: the occupancy grid's cells the trainer marched [R, R, R] bool (CPU), set by the trainer
        # and stored in the .vqp; rendering marches only these cells. Space the training skipped
        # never learned to be empty, so an occupancy grid estimated afresh from the density can mark
        # such cells occupied and render them as floaters. None: estimate one (older files).
        self.occupancy_mask: Tensor | None = None

    def image(self, xy: Tensor) -> Tensor:  # xy [B, 2] in [0, 1] -> rgb [B, 3]
        assert self.config.dims == 2, "image() needs a 2D field"
        assert xy.ndim == 2 and xy.shape[1] == 2, xy.shape
        return torch.sigmoid(self.mlp(self.grid(xy)))

    def _density_head(
        self, p: Tensor, tables: list[Tensor | None] | None = None
    ) -> tuple[Tensor, Tensor]:  # -> density [B], h [B, 1 + geo]
        """Density and the MLP output; a sparse grid's field is empty outside its allocated region.
        ``tables``: the grid's ``lookup_inputs()`` when the caller computed them (a compiled call
        takes them as inputs: the VQ-AD table decode stays outside the compiled graph)."""
        feats, support = self.grid.features_and_support(p, tables)
        h = self.mlp(feats)
        density = torch.exp(h[:, 0].clamp(max=MAX_LOG_DENSITY))
        if support is not None:
            density = torch.where(support, density, torch.zeros((), dtype=density.dtype, device=density.device))
        return density, h

    def density(self, p: Tensor, tables: list[Tensor | None] | None = None) -> Tensor:  # p [B, 3] in [0, 1] -> [B]
        assert self.config.dims == 3, "density() needs a 3D field"
        return self._density_head(p, tables)[0]

    def radiance(self, p: Tensor, dirs: Tensor, tables: list[Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
        """p [B, 3] in [0, 1], dirs [B, 3] unit -> (density [B], rgb [B, 3])."""
        assert self.config.dims == 3 and self.color_mlp is not None, "radiance() needs a 3D field"
        assert p.ndim == 2 and p.shape[1] == 3 and dirs.shape == p.shape, (p.shape, dirs.shape)
        density, h = self._density_head(p, tables)
        enc = sh_encoding(dirs, self.config.decoder.dir_degree)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([h[:, 1:], enc], -1)))
        return density, rgb

    def image_pixels(self, height: int, width: int, chunk: int = 1 << 16) -> Tensor:  # -> [H, W, 3]
        """Evaluate a 2D field at every pixel centre of an H x W image (no grad)."""
        dev = next(self.parameters(), None)
        device = dev.device if dev is not None else next(self.buffers()).device
        xy = pixel_coords(height, width, device)
        with torch.no_grad():
            out = torch.cat([self.image(xy[s : s + chunk]) for s in range(0, xy.shape[0], chunk)])
        return out.reshape(height, width, 3)


def pixel_coords(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:  # [H*W, 2]
    """Pixel centres of an H x W image in [0, 1]^2, row-major, (x, y) order."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
