"""Type aliases shared by the public signatures.

The losses accept arrays of any library that speaks the array API (NumPy,
PyTorch, JAX, CuPy, array-api-strict, ...), plus nested lists and scalars, and
return the caller's array type.  No single static type covers all of them, so
both aliases are ``Any``: they document intent in the signatures without
rejecting any array library a type checker cannot see.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["Array", "ArrayLike"]

#: An array of any supported library (the type a loss returns: the caller's own).
Array: TypeAlias = Any
#: Anything a loss accepts as an array argument: an array of any supported
#: library, a nested sequence or a Python scalar.
ArrayLike: TypeAlias = Any
