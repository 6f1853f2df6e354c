r"""The chunked linear + cross-entropy: tiling, order of operations, memory plan.

Shared by the NumPy path (:mod:`crossentropy.linear`) and the PyTorch adapter
(:mod:`crossentropy.torch.linear`, CPU and CUDA).  A *backend* supplies the
matrix products and the in-chunk cross-entropy kernels; this module decides
which products run, on which blocks, in which order.

Tiles
-----
The rows are cut into blocks of ``rows`` rows and the vocabulary into tiles
of ``width`` classes.  Every matrix product is one tile or one block::

    z_t      = h_r @ W_tᵀ (+ b_t)         (rows × width, K = D)   logits tile
    ∂W_t    += g_tᵀ @ h_r                  (width × D,   K = rows) in row-block order
    ∂h_r     = Σ_t g_t @ W_t               (rows × D,    K = width) in tile order

On the CPU the tile shape is a function of the problem's shape alone
(:func:`cpu_layout`), never of the memory budget or the thread count: every
product sees the same operands with the same shapes, and every sum is
accumulated in the same order, whatever the budget.  The products run on the
array library's BLAS (OpenBLAS for NumPy, MKL for torch), whose threads split
the output matrix, not the inner sums, and the chunk kernels are bitwise
independent of their thread count; so the results are bitwise identical
across budgets and thread counts (tested for 1 and 2 threads of each;
``docs/linear.md``).

Cross-entropy of a block
------------------------
With a single tile (``V <= width``) the fused in-chunk kernel computes each
row's loss and writes its gradient over the logits.  With several tiles each
tile is reduced to its partial state (:func:`vocab_partials`: max, sums, the
target's logit), the states of a block are merged in tile order, and each
tile's gradient is finished from the merged state (:func:`vocab_finish`),
in place.  The loss and every gradient entry depend only on the tiles and
the merged state, not on whether the tiles were kept (one pass) or computed
again (two passes), which is what the memory budget decides:

* **one pass** (budget >= ``rows × V`` logits): the block's tiles stay in
  memory between the merge and the gradient products: three products in all,
  the floor;
* **two passes** (a smaller budget): the tiles are computed, reduced and
  dropped, then computed again for the gradient: four products, and only
  ``inflight`` tiles in memory.

The gradient scale of each row (the reduction's ``1/Σw``, a global
``num_items_in_batch``, sample weights, ``grad_output``) is known before the
first block and goes into the kernel (``grad_scale``), so ``g`` *is* the
gradient of the loss w.r.t. the logits and feeds the two products directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._errors import InvalidOptionError

if TYPE_CHECKING:
    from ._linear_backend import ChunkBackend, _Tile
    from ._typing import Array

    #: a block's resident tiles: ``(v0, v1, tile)`` in vocabulary order
    Tiles = Sequence[tuple[int, int, _Tile]]

__all__ = ["Layout", "cpu_layout", "single_tile_layout", "run", "TILE_CLASSES", "ROW_BLOCK_BYTES",
           "DEFAULT_MEMORY_BUDGET"]

#: Classes per tile on the CPU: a tile's logits and the gradient products are
#: BLAS calls of this width (the last tile of the vocabulary is narrower).
#: Wide tiles keep the products near the BLAS's large-matrix speed (measured
#: on N=1024, D=1024, V=32000, 2 threads: 2048-wide tiles cost ~35 % more than
#: 16384-wide ones, 8192-wide ~12 % more).
TILE_CLASSES = 16384
#: Rows per block on the CPU: as many as make ``ROW_BLOCK_BYTES`` of logits,
#: a multiple of ``ROW_MULTIPLE``, between ``MIN_ROWS`` and ``MAX_ROWS``: 384
#: rows at V = 32000 float32 (a 47 MiB block).  The row count is the inner
#: dimension of ∂W's products, which must stay large: on one thread, D = 2048,
#: V = 128256, blocks of 96 rows cost 1.40× the three products, blocks of 384
#: rows 1.00× (one pass) or 1.34× (two passes).
ROW_BLOCK_BYTES = 48 << 20
ROW_MULTIPLE = 16
MIN_ROWS = 384
MAX_ROWS = 512
#: Default bound on the logits held at once (bytes); on the CPU the default is this or one block
#: of rows, whichever is larger (one pass: the three products), e.g. 188 MiB at V = 128256 float32.
DEFAULT_MEMORY_BUDGET = 64 << 20


@dataclass(frozen=True)
class Layout:
    """How a problem of ``N`` rows and ``V`` classes is cut.

    ``rows``, ``width``: block and tile sizes; ``ntiles``: tiles per block;
    ``item``: bytes per logit; ``one_pass``: whether a block's tiles are kept
    between the cross-entropy and the gradient products; ``inflight``: tiles
    computed at once in the two-pass mode (and in the loss-only mode).
    """

    N: int
    V: int
    rows: int
    width: int
    ntiles: int
    item: int
    one_pass: bool
    inflight: int

    def bounds(self) -> list[tuple[int, int]]:
        """``(v0, v1)`` of each tile."""
        return [(v0, min(self.V, v0 + self.width)) for v0 in range(0, self.V, self.width)]

    @property
    def tile_bytes(self) -> int:
        return self.rows * self.width * self.item


def _budget(memory_budget: float | None, default: int) -> int:
    budget = default if memory_budget is None else memory_budget
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget >= 0 or math.isinf(budget):
        raise InvalidOptionError(f"memory_budget must be a number of bytes (or None); got {memory_budget!r}")
    return int(budget)


def cpu_layout(N: int, V: int, item: int, memory_budget: float | None = None, threads: int = 1) -> Layout:
    """The CPU layout: tile shape from ``(N, V, item)`` only; the budget picks one or two passes
    (default: one pass).

    Raises :class:`InvalidOptionError` for a budget below one tile of logits.
    """
    width = max(1, min(V, TILE_CLASSES))
    ntiles = max(1, -(-V // width))
    rows = (ROW_BLOCK_BYTES // max(1, V * item)) // ROW_MULTIPLE * ROW_MULTIPLE
    rows = max(1, min(max(MIN_ROWS, min(MAX_ROWS, rows)), N))
    budget = _budget(memory_budget, max(DEFAULT_MEMORY_BUDGET, rows * V * item))
    tile = rows * width * item
    if budget < tile:
        raise InvalidOptionError(
            f"memory_budget={budget} bytes is too small: the smallest working set is one tile of logits "
            f"({rows} rows × {width} classes × {item} bytes = {tile} bytes; the tile's shape depends only on the "
            f"problem's, which keeps results bitwise identical for every budget)")
    one_pass = budget >= rows * V * item
    inflight = max(1, min(ntiles, int(threads), budget // tile))
    return Layout(N, V, rows, width, ntiles, item, one_pass, inflight)


def single_tile_layout(N: int, V: int, item: int, memory_budget: float | None = None,
                       default: int = DEFAULT_MEMORY_BUDGET) -> Layout:
    """One tile spans the vocabulary; the budget sets the rows (the CUDA layout).

    Raises :class:`InvalidOptionError` for a budget below one row of logits.
    """
    budget = _budget(memory_budget, default)
    row = max(1, V * item)
    if budget < row:
        raise InvalidOptionError(
            f"memory_budget={budget} bytes is too small for one row of logits (V = {V} classes × {item} bytes "
            f"= {row} bytes)")
    rows = max(1, min(N, budget // row))
    return Layout(N, V, rows, max(1, V), 1, item, True, 1)


def _scale_rows(scale: Any, r0: int, r1: int) -> Any:
    return scale[r0:r1] if getattr(scale, "ndim", 0) else scale


def run(bk: ChunkBackend, lay: Layout, *, scale: Any = None) -> Array:
    """Loss per row (the backend's float array of ``N``); with ``scale`` (a number or one per row) also
    the gradients the backend was asked for, accumulated into its buffers."""
    grad = scale is not None and bk.wants_grad
    loss = bk.new_loss(lay.N)
    tiles = lay.bounds()
    if lay.one_pass and (grad or lay.ntiles == 1):
        bufs = bk.alloc_tiles(lay.rows, [v1 - v0 for v0, v1 in tiles])
    else:
        bufs = bk.alloc_tiles(lay.rows, [lay.width] * lay.inflight)
    for r0 in range(0, lay.N, lay.rows):
        r1 = min(lay.N, r0 + lay.rows)
        s = _scale_rows(scale, r0, r1) if grad else None
        bk.begin_block(r0, r1)
        if lay.ntiles == 1:
            z = bk.view(bufs[0], r1 - r0, lay.V)
            bk.run([bk.logits_task(r0, r1, 0, lay.V, z)])
            bk.put_loss(loss, r0, r1, bk.ce_full(z, r0, r1, s))
            if grad:
                _gradients(bk, r0, r1, [(0, lay.V, z)], first_tile=True)
        elif lay.one_pass and grad:
            zs = [(v0, v1, bk.view(b, r1 - r0, v1 - v0)) for (v0, v1), b in zip(tiles, bufs)]
            bk.run([bk.logits_task(r0, r1, v0, v1, z) for v0, v1, z in zs])
            merged = bk.merge([bk.partials(z, r0, r1, v0, v1) for v0, v1, z in zs])
            for i, (v0, v1, z) in enumerate(zs):
                rows_loss = bk.finish(z, r0, r1, v0, v1, merged, s, write_loss=i == 0)
                if i == 0:
                    bk.put_loss(loss, r0, r1, rows_loss)
            _gradients(bk, r0, r1, zs, first_tile=True)
        else:
            merged, last = _pass_one(bk, lay, tiles, bufs, r0, r1)
            if not grad:
                # the loss comes from the merged state alone: any resident tile gives the same bits
                v0, v1, z = last
                bk.put_loss(loss, r0, r1, bk.finish(z, r0, r1, v0, v1, merged, None, write_loss=True))
            else:
                _pass_two(bk, lay, tiles, bufs, r0, r1, merged, s, loss)
        bk.end_block(r0, r1)
    return loss


def _groups(lay: Layout, tiles: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    k = lay.inflight
    return [tiles[i:i + k] for i in range(0, len(tiles), k)]


def _pass_one(bk: ChunkBackend, lay: Layout, tiles: list[tuple[int, int]], bufs: list[Array], r0: int,
              r1: int) -> tuple[Any, tuple[int, int, _Tile]]:
    parts: list[Any] = []
    last = None
    for group in _groups(lay, tiles):
        zs = [(v0, v1, bk.view(b, r1 - r0, v1 - v0)) for (v0, v1), b in zip(group, bufs)]
        bk.run([bk.logits_task(r0, r1, v0, v1, z) for v0, v1, z in zs])
        parts.extend(bk.partials(z, r0, r1, v0, v1) for v0, v1, z in zs)
        last = zs[0]
    # the vocabulary has at least one tile, so `last` is set
    return bk.merge(parts), cast("tuple[int, int, _Tile]", last)


def _pass_two(bk: ChunkBackend, lay: Layout, tiles: list[tuple[int, int]], bufs: list[Array], r0: int, r1: int,
              merged: Any, s: Any, loss: Array) -> None:
    first = True
    for group in _groups(lay, tiles):
        zs = [(v0, v1, bk.view(b, r1 - r0, v1 - v0)) for (v0, v1), b in zip(group, bufs)]
        bk.run([bk.logits_task(r0, r1, v0, v1, z) for v0, v1, z in zs])
        for v0, v1, z in zs:
            rows_loss = bk.finish(z, r0, r1, v0, v1, merged, s, write_loss=v0 == 0)
            if v0 == 0:
                bk.put_loss(loss, r0, r1, rows_loss)
        _gradients(bk, r0, r1, zs, first_tile=first)
        first = False


def _gradients(bk: ChunkBackend, r0: int, r1: int, zs: Tiles, *, first_tile: bool) -> None:
    """The gradient products of one block's tiles ``zs`` (in tile order); ``first_tile``: whether
    ``zs[0]`` is the vocabulary's first tile (it starts ∂h_r instead of adding to it)."""
    bk.run(bk.grad_tasks(r0, r1, zs, first_tile))
    bk.grad_bias(zs)
