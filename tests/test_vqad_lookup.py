"""The VQ-AD lookup's fast path (one table per level, gathered like the hash grid) against its
dense reference, outputs and gradients; candidate codes (b > 4) and their refresh; the trainable
state's bytes at b = 8 against b = 4; the no-grad table cache after optimizer steps."""

from __future__ import annotations

import pytest
import torch
from vqpress_server.core.fields.config import VqadGridConfig
from vqpress_server.core.fields.grid import (
    VqadGrid,
    code_neighbours,
    sparse_rows,
    spread_candidates,
    vqad_features,
    vqad_features_reference,
)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("M", [None, 5])
def test_table_lookup_matches_reference_with_unallocated_rows_and_candidates(hard: bool, M: int | None) -> None:
    g = torch.Generator().manual_seed(3 + int(hard))
    m, K, k, B = 60, 16, 3, 400
    logits = torch.randn(m, M or K, generator=g, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(K, k, generator=g, dtype=torch.float64, requires_grad=True)
    cand = None if M is None else spread_candidates(m, K, M, g, torch.device("cpu"))
    rows = torch.randint(-1, m, (B, 8), generator=g)  # -1: an unallocated vertex (feature 0)
    w = torch.randn(B, 8, k, generator=g, dtype=torch.float64)
    res = []
    for fn in (vqad_features, vqad_features_reference):
        f = fn(logits, codebook, rows, hard, cand)
        assert f.shape == (B, 8, k)
        (f * w).sum().backward()
        res.append((f.detach(), logits.grad.clone(), codebook.grad.clone()))
        logits.grad = codebook.grad = None
    for a, b in zip(*res, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    out, glog, gcb = res[0]
    assert bool((out[rows < 0] == 0).all())
    untouched = torch.ones(m, dtype=torch.bool)
    untouched[rows[rows >= 0]] = False
    assert bool((glog[untouched] == 0).all()) and glog.abs().sum() > 0 and gcb.abs().sum() > 0


def test_table_lookup_in_chunks_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    from vqpress_server.core.fields import grid as grid_mod

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 6, generator=g, requires_grad=True)
    codebook = torch.randn(32, 3, generator=g, requires_grad=True)
    cand = spread_candidates(40, 32, 6, g, torch.device("cpu"))
    rows = torch.randint(0, 40, (64, 4), generator=g)
    ref = vqad_features_reference(logits, codebook, rows, False, cand)
    ref.sum().backward()
    want = (logits.grad.clone(), codebook.grad.clone())
    logits.grad = codebook.grad = None
    monkeypatch.setattr(grid_mod, "VQAD_CHUNK_ELEMS", 6 * 7)  # 7 rows per chunk
    out = vqad_features(logits, codebook, rows, False, cand)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(logits.grad, want[0])
    torch.testing.assert_close(codebook.grad, want[1])


def test_code_neighbours_are_the_nearest_codes_centre_first() -> None:
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(64, 2, generator=g)
    centers = torch.randint(0, 64, (50,), generator=g)
    nb = code_neighbours(codebook, centers, 8, chunk=7).long()
    assert nb.shape == (50, 8) and bool((nb[:, 0] == centers).all())
    d = torch.cdist(codebook[centers], codebook)
    d[torch.arange(50), centers] = -1
    want = d.topk(8, largest=False).indices
    assert torch.equal(nb.sort(1).values, want.sort(1).values)


def _sparse_grid(bits: int, candidates: int = 16) -> VqadGrid:
    cfg = VqadGridConfig(levels=3, base_resolution=8, max_resolution=32, features=2, bits=bits, sparse=True,
                         sparse_min_resolution=16, candidates=candidates, combine="concat")  # fmt: skip
    grid = VqadGrid(3, cfg, torch.Generator().manual_seed(0))
    c = (torch.arange(16, dtype=torch.float32) + 0.5) / 16 - 0.5
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    grid.allocate(x**2 + y**2 + z**2 < 0.3**2, generator=torch.Generator().manual_seed(1))
    return grid


def _train_bytes(grid: VqadGrid) -> int:
    """Bytes of every tensor one Adam step leaves: parameters, gradients, moments, buffers."""
    opt = torch.optim.Adam(grid.parameters(), lr=1e-2)
    grid(torch.rand(512, 3, generator=torch.Generator().manual_seed(2))).square().sum().backward()
    opt.step()
    tensors = [*grid.parameters(), *(p.grad for p in grid.parameters()), *grid.buffers()]
    tensors += [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def test_b8_trains_in_about_the_memory_of_b4() -> None:
    b4, b8, b8_all = _sparse_grid(4), _sparse_grid(8), _sparse_grid(8, candidates=0)
    assert b4.allocated_vertices() == b8.allocated_vertices()
    assert not b4.uses_candidates and b8.uses_candidates and b8.logits[2].shape[1] == 16
    n4, n8, n_all = _train_bytes(b4), _train_bytes(b8), _train_bytes(b8_all)
    # b = 8 adds the candidates' int16 codes and bigger codebooks; scoring all 256 codes is ~16x.
    assert n8 <= 1.5 * n4, (n8, n4)
    assert n_all > 8 * n4, (n_all, n4)
    assert b8.state_bytes() <= 1.5 * b4.state_bytes()


def test_refresh_keeps_the_choice_and_carries_logits_and_moments() -> None:
    grid = _sparse_grid(8, candidates=8)
    with torch.no_grad():
        for c in grid.logits:
            c.normal_(0.0, 1.0)
    opt = torch.optim.Adam(grid.parameters(), lr=1e-2)
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(4))
    grid(x).square().sum().backward()
    opt.step()
    level = 2
    before_cand = grid.level_candidates(level).clone().long()
    before_logits = grid.logits[level].detach().clone()
    before_avg = opt.state[grid.logits[level]]["exp_avg"].clone()
    baked = grid.bake()(x)
    grid.refresh_candidates(opt)
    assert torch.equal(grid.bake()(x), baked)  # the choice (and so the baked field) is unchanged
    cand = grid.level_candidates(level).long()
    nb = code_neighbours(grid.codebooks[level], cand[:, 0], 8).long()
    assert torch.equal(cand, nb)  # the 8 codes nearest the choice, the choice first
    # A code that stayed keeps its logit and moment; a new one starts at the row's minimum, moment 0.
    eq = cand[:, :, None] == before_cand[:, None, :]
    has, pos = eq.any(-1), eq.int().argmax(-1)
    logits = grid.logits[level].detach()
    torch.testing.assert_close(logits[has], before_logits.gather(1, pos)[has])
    torch.testing.assert_close(logits[~has], before_logits.min(-1, keepdim=True).values.expand_as(logits)[~has])
    avg = opt.state[grid.logits[level]]["exp_avg"]
    torch.testing.assert_close(avg[has], before_avg.gather(1, pos)[has])
    assert bool((avg[~has] == 0).all()) and bool((~has).any())


def test_no_grad_table_follows_optimizer_steps() -> None:
    grid = _sparse_grid(8, candidates=8)
    opt = torch.optim.Adam(grid.parameters(), lr=0.5)
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(5))
    for _ in range(3):
        with torch.no_grad():
            fast = grid(x)
        grid.reference = True
        with torch.no_grad():
            ref = grid(x)
        grid.reference = False
        torch.testing.assert_close(fast, ref)
        opt.zero_grad()
        grid(x).sum().backward()
        opt.step()
        grid.refresh_candidates(opt)


def test_sparse_rows_and_candidates_survive_a_state_dict_round_trip() -> None:
    grid = _sparse_grid(8, candidates=8)
    grid.refresh_candidates()
    cfg = VqadGridConfig(levels=3, base_resolution=8, max_resolution=32, features=2, bits=8, sparse=True,
                         sparse_min_resolution=16, candidates=8, combine="concat")  # fmt: skip
    fresh = VqadGrid(3, cfg)
    fresh.load_state_dict(grid.state_dict())
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(fresh.bake()(x), grid.bake()(x))
    assert torch.equal(fresh.level_rows(2), sparse_rows(grid.level_rows(2) >= 0))
