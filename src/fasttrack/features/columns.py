"""The model's input, column by column: what every driver gives and every runtime takes.

A numeric or boolean feature is a float64 array (NaN missing); a categorical one is a :class:`CategoricalColumn`,
codes into its distinct categories, so that a million rows of a few categories are converted once per category.
This module imports neither pandas nor pyarrow: the server's runtimes take these columns without either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class CategoricalColumn:
    """A categorical feature's values as ``codes`` into the distinct ``categories`` (-1: missing)."""

    codes: np.ndarray[Any, Any]
    categories: list[str]

    def values(self, missing: Any) -> np.ndarray[Any, Any]:
        """The values as an object array of ``str``, with ``missing`` for missing ones."""
        table = np.empty(len(self.categories) + 1, dtype=object)
        table[:] = [*self.categories, missing]
        return table[self.codes]  # type: ignore[no-any-return]  # -1 picks ``missing``, the last entry

    def mapped(self, table: np.ndarray[Any, Any], missing: Any) -> np.ndarray[Any, Any]:
        """The values through ``table`` (one entry per category), with ``missing`` for missing ones."""
        return np.append(table, np.asarray([missing], dtype=table.dtype))[self.codes]  # type: ignore[no-any-return]

    def arrow(self) -> pa.DictionaryArray:
        """The values as an Arrow dictionary array of text (nulls missing)."""
        import pyarrow as pa

        from fasttrack.data.arrays import arrow_array, arrow_strings

        indices = arrow_array(self.codes.astype(np.int32), missing=self.codes < 0)
        return pa.DictionaryArray.from_arrays(indices, arrow_strings(self.categories))


#: One feature's model input: float64 values (NaN missing) or a categorical column.
FeatureValues: TypeAlias = np.ndarray[Any, Any] | CategoricalColumn
