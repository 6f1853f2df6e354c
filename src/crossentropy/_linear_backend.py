"""The backend of the chunked linear cross-entropy (:mod:`crossentropy._linear_engine`).

One backend serves NumPy arrays, torch CPU tensors and torch CUDA tensors; it
is parametrised by

* the matrix products (:class:`NumpyMM`: OpenBLAS through ``np.matmul(out=)``;
  :class:`TorchMM`: MKL or cuBLAS through ``torch.mm(out=)`` and ``addmm_``,
  which accumulates in place with no temporary), always into preallocated
  outputs;
* the in-chunk cross-entropy kernels: the library's compiled CPU kernels
  (:mod:`crossentropy._kernels._chunk`) on NumPy views of the tile (a torch CPU
  tensor's ``.numpy()`` shares its memory), or the Triton kernels
  (:mod:`crossentropy._kernels.triton`) on CUDA tensors.  Both have the same
  functions, options and semantics.

Every product has a shape fixed by the layout and runs in the same order
whatever the memory budget, so the results do not depend on the budget; the
chunk kernels do not depend on their thread count (``docs/performance.md``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._typing import Array

__all__ = ["ChunkBackend", "NumpyMM", "TorchMM"]

#: One unit of work of a block (a product), run by :meth:`ChunkBackend.run`.
Task = Callable[[], None]


class NumpyMM:
    """Products on NumPy arrays: ``np.matmul`` into preallocated buffers.

    NumPy has no ``C += A·B`` product, so the accumulating products go through
    one scratch buffer each (allocated once, at most ``width × D`` and
    ``rows × D``) and an in-place add.
    """

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self._scratch: dict[str, np.ndarray] = {}

    def empty(self, n: int) -> np.ndarray:
        return np.empty(n, self.dtype)

    def zeros(self, shape: tuple[int, ...], acc: bool = False) -> np.ndarray:
        return np.zeros(shape, self.dtype)

    @staticmethod
    def loss_buffer(n: int) -> np.ndarray:
        return np.empty(n, np.float64)

    @staticmethod
    def as_kernel(a: np.ndarray) -> np.ndarray:
        return a

    def _tmp(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._scratch.get(key)
        n = shape[0] * shape[1]
        if buf is None or buf.size < n:
            buf = self._scratch[key] = np.empty(n, self.dtype)
        return buf[:n].reshape(shape)

    def logits(self, h: np.ndarray, w: np.ndarray, b: np.ndarray | None, out: np.ndarray) -> None:
        np.matmul(h, w.T, out=out)
        if b is not None:
            out += b  # broadcast over the rows, in place

    def mm_into(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        np.matmul(a, b, out=out)

    def mm_add(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, key: str) -> None:
        tmp = self._tmp(key, out.shape)
        np.matmul(a, b, out=tmp)
        out += tmp

    @staticmethod
    def col_sum_add(z: np.ndarray, out: np.ndarray) -> None:
        out += z.sum(axis=0)


class TorchMM:
    """Products on torch tensors (CPU or CUDA): ``torch.mm``/``addmm`` with ``out=`` and in-place ``addmm_``.

    ``acc_dtype`` is the dtype the weight and bias gradients are summed in over
    the row blocks (float32 for bfloat16/float16 inputs); ``kernel_numpy``: the
    kernels take NumPy views (the CPU kernels) rather than the tensors (Triton).
    """

    def __init__(self, dtype: Any, device: Any, *, acc_dtype: Any = None, kernel_numpy: bool = True) -> None:
        import torch

        self.torch = torch
        self.dtype, self.device = dtype, device
        self.acc_dtype = acc_dtype or dtype
        self.kernel_numpy = kernel_numpy

    def empty(self, n: int) -> Array:
        return self.torch.empty(n, dtype=self.dtype, device=self.device)

    def zeros(self, shape: tuple[int, ...], acc: bool = False) -> Array:
        return self.torch.zeros(shape, dtype=self.acc_dtype if acc else self.dtype, device=self.device)

    def loss_buffer(self, n: int) -> Array:
        if self.kernel_numpy:
            return np.empty(n, np.float64)
        return self.torch.empty(n, dtype=self.torch.float32, device=self.device)

    def as_kernel(self, a: Array) -> Array:
        return a.numpy() if self.kernel_numpy else a

    def logits(self, h: Array, w: Array, b: Array | None, out: Array) -> None:
        if b is None:
            self.torch.mm(h, w.t(), out=out)
        else:
            self.torch.addmm(b, h, w.t(), out=out)

    def mm_into(self, a: Array, b: Array, out: Array) -> None:
        self.torch.mm(a, b, out=out)

    @staticmethod
    def mm_add(a: Array, b: Array, out: Array, key: str) -> None:
        if out.dtype != a.dtype:  # a low-precision tile into a float32 sum
            a, b = a.to(out.dtype), b.to(out.dtype)
        out.addmm_(a, b)

    @staticmethod
    def col_sum_add(z: Array, out: Array) -> None:
        out += z.sum(dim=0, dtype=out.dtype)


class _Tile:
    """A tile of logits: the library's array (``a``) and its NumPy view (``n``, the same memory)."""

    __slots__ = ("a", "n")

    def __init__(self, a: Array, n: Array) -> None:
        self.a, self.n = a, n


class ChunkBackend:
    """What :func:`crossentropy._linear_engine.run` needs.

    ``h`` ``(N, D)``, ``w`` ``(V, D)`` and ``b`` ``(V,)`` (or None) are C-contiguous
    arrays of the library ``mm`` works on; ``kern`` the kernel module
    (:mod:`crossentropy._kernels._chunk` or :mod:`crossentropy._kernels.triton`);
    ``y`` the int64 targets ``(N,)`` and ``cw`` the class weights (or None) as the
    kernels take them (NumPy for the CPU kernels, tensors for Triton); ``opts``
    the kernels' options (``ignore_index``, ``label_smoothing``, ``z_loss``,
    ``softcap``; the targets were checked before).  ``want`` says which of
    ``dh``, ``dw``, ``db`` to accumulate (buffers of ``mm``'s library, allocated
    here; ``dw`` and ``db`` in ``mm``'s accumulation dtype).
    """

    def __init__(self, mm: NumpyMM | TorchMM, kern: types.ModuleType, h: Array, w: Array, b: Array | None, y: Array,
                 cw: Array | None, opts: dict[str, Any], *,
                 want: Sequence[bool] = (False, False, False)) -> None:
        self.mm, self.kern, self.h, self.w, self.b, self.y, self.cw = mm, kern, h, w, b, y, cw
        self.opts = opts
        self.N, self.D = int(h.shape[0]), int(h.shape[1])
        self.V = int(w.shape[0])
        want_h, want_w, want_b = want
        self.wants_grad = bool(want_h or want_w or want_b)
        self.dh: Array | None = mm.empty(self.N * self.D).reshape(self.N, self.D) if want_h else None
        self.dw: Array | None = mm.zeros((self.V, self.D), acc=True) if want_w else None
        self.db: Array | None = mm.zeros((self.V,), acc=True) if want_b else None
        self._pset = dict(label_smoothing=opts["label_smoothing"], softcap=opts["softcap"])

    # buffers ---------------------------------------------------------------------------------
    def new_loss(self, n: int) -> Array:
        return self.mm.loss_buffer(n)

    def alloc_tiles(self, rows: int, widths: Sequence[int]) -> list[Array]:
        return [self.mm.empty(rows * w) for w in widths]

    def view(self, buf: Array, r: int, w: int) -> _Tile:
        a = buf[: r * w].reshape(r, w)
        return _Tile(a, self.mm.as_kernel(a))

    def begin_block(self, r0: int, r1: int) -> None:
        pass

    def end_block(self, r0: int, r1: int) -> None:
        pass

    @staticmethod
    def run(tasks: Sequence[Task]) -> None:
        for t in tasks:
            t()

    # products --------------------------------------------------------------------------------
    def logits_task(self, r0: int, r1: int, v0: int, v1: int, z: _Tile) -> Task:
        b = None if self.b is None else self.b[v0:v1]
        return lambda: self.mm.logits(self.h[r0:r1], self.w[v0:v1], b, z.a)

    def grad_tasks(self, r0: int, r1: int, zs: Sequence[tuple[int, int, _Tile]], first_tile: bool) -> list[Task]:
        tasks: list[Task] = []
        dw = self.dw
        if dw is not None:
            for v0, v1, z in zs:
                # ∂W_t += g_tᵀ h_r, row blocks in order (defaults bind this tile's values)
                def dw_task(v0: int = v0, v1: int = v1, z: _Tile = z) -> None:
                    self.mm.mm_add(z.a.T, self.h[r0:r1], dw[v0:v1], "dw")
                tasks.append(dw_task)
        dh = self.dh
        if dh is not None:
            def dh_task() -> None:
                # ∂h_r = Σ_t g_t W_t, tiles in order (the first tile starts the sum)
                out = dh[r0:r1]
                for i, (v0, v1, z) in enumerate(zs):
                    if i == 0 and first_tile:
                        self.mm.mm_into(z.a, self.w[v0:v1], out)
                    else:
                        self.mm.mm_add(z.a, self.w[v0:v1], out, "dh")
            tasks.append(dh_task)
        return tasks

    def grad_bias(self, zs: Sequence[tuple[int, int, _Tile]]) -> None:
        if self.db is not None:
            for v0, v1, z in zs:
                self.mm.col_sum_add(z.a, self.db[v0:v1])

    # cross-entropy ---------------------------------------------------------------------------
    def _cw(self, v0: int, v1: int) -> Array | None:
        return None if self.cw is None else self.cw[v0:v1]

    def ce_full(self, z: _Tile, r0: int, r1: int, s: Any) -> Array:
        kw = {} if s is None else dict(grad_scale=s, grad_into=z.n)
        loss, _ = self.kern.chunk_cross_entropy(z.n, self.y[r0:r1], weight=self.cw, validate=False, **self.opts,
                                                **kw)
        return loss

    def partials(self, z: _Tile, r0: int, r1: int, v0: int, v1: int) -> Any:
        return self.kern.vocab_partials(z.n, self.y[r0:r1], class_offset=v0, num_classes=self.V,
                                     weight=self._cw(v0, v1), **self._pset)

    def merge(self, parts: list[Any]) -> Any:
        return self.kern.merge_partials(parts)

    def finish(self, z: _Tile, r0: int, r1: int, v0: int, v1: int, merged: Any, s: Any,
               write_loss: bool) -> Array:
        kw = {} if s is None else dict(grad_scale=s, grad_into=z.n)
        loss, _ = self.kern.vocab_finish(z.n, self.y[r0:r1], merged, class_offset=v0, num_classes=self.V,
                                         weight=self._cw(v0, v1), write_loss=write_loss, validate=False,
                                         **self.opts, **kw)
        return loss

    @staticmethod
    def put_loss(loss: Array, r0: int, r1: int, rows_loss: Array) -> None:
        loss[r0:r1] = rows_loss
