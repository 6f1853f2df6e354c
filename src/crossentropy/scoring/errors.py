"""The one error a prediction file can raise, with its location."""

from __future__ import annotations

from .._errors import CrossEntropyError

__all__ = ["PredictionFileError"]


class PredictionFileError(CrossEntropyError, ValueError):
    """A prediction file that cannot be scored: unreadable, malformed or inconsistent.

    The message names the file and, where it applies, the line (text formats,
    1-based, the header is line 1) or data row (1-based) and the column.

    >>> str(PredictionFileError("a.csv", "'x' is not a number", line=3, column="p1"))
    "a.csv: line 3, column 'p1': 'x' is not a number"
    """

    def __init__(self, path, message, *, line=None, row=None, column=None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        loc = (", ".join(where) + ": ") if where else ""
        super().__init__(f"{path}: {loc}{message}")
        self.path, self.line, self.row, self.column, self.reason = str(path), line, row, column, message
