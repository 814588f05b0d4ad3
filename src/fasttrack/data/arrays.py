"""Arrow arrays without pandas: made from numpy buffers, and read back as numpy views.

pyarrow imports pandas (a quarter of a second) the first time ``pa.array()``, ``pa.scalar()`` or
``Array.to_numpy()`` converts anything, to check whether it is a pandas object. Batch scoring never has pandas
objects, so the arrays and scalars of its path are made from buffers and read back through buffers instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: A batch of rows: a record batch, or a table of several chunks (a CSV batch: the blocks read, not copied).
Batch: TypeAlias = pa.RecordBatch | pa.Table
#: A column of a batch: one array, or a chunked array (a table's column).
Column: TypeAlias = pa.Array | pa.ChunkedArray


def arrow_array(values: np.ndarray[Any, Any], missing: np.ndarray[Any, Any] | None = None) -> pa.Array:
    """A numeric or boolean numpy array as an Arrow array (null where ``missing`` is true)."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        kind: pa.DataType = pa.bool_()
    else:
        data, kind = pa.py_buffer(values), pa.from_numpy_dtype(values.dtype)
    validity = None
    if missing is not None and missing.any():
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(kind, len(values), [validity, data])


def arrow_strings(values: Sequence[str]) -> pa.Array:
    """Text as an Arrow string array."""
    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(value) for value in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def arrow_scalar(value: float | str | None, kind: pa.DataType) -> pa.Scalar:
    """A float, text or null scalar of type ``kind``."""
    if value is None:
        return pa.nulls(1, kind)[0]
    if isinstance(value, str):
        return arrow_strings([value])[0]
    number = arrow_array(np.asarray([value], dtype=np.float64))
    return (number if kind == pa.float64() else number.cast(kind))[0]


_NAN = arrow_scalar(np.nan, pa.float64())


def float_values(column: Column) -> np.ndarray[Any, Any]:
    """A numeric column's values as a float64 numpy array, NaN where missing."""
    return _numpy_values(column, pa.float64(), np.float64, _NAN)


def int_values(column: Column, null: int) -> np.ndarray[Any, Any]:
    """An integer column's values as an int32 numpy array, ``null`` where missing."""
    # Dictionary indices from Parquet may be narrower than int32 (pandas' categories: int8): the cast widens them.
    return _numpy_values(column, pa.int32(), np.int32, arrow_array(np.asarray([null], dtype=np.int32))[0])


def _numpy_values(column: Column, kind: pa.DataType, dtype: type[Any], fill: pa.Scalar) -> np.ndarray[Any, Any]:
    """``column`` cast to ``kind``, nulls replaced by ``fill``, as a numpy view of its data (one copy at most)."""
    if column.type != kind:
        column = column.cast(kind)
    if column.null_count:
        column = pc.fill_null(column, fill)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    data = column.buffers()[1]
    if data is None:  # no rows
        return np.empty(0, dtype=dtype)
    size = np.dtype(dtype).itemsize
    return np.frombuffer(data, dtype=dtype, count=len(column), offset=column.offset * size)


#: Integers beyond this in size are not exact as floats.
_EXACT_INT = 2**53


def python_values(values: list[Any]) -> pa.Array | None:
    """Python values (a JSON column, a pandas object column) as an Arrow array of their own type, or ``None``
    when Arrow would change what a value means: it refuses mixed types, and it would turn booleans mixed with
    numbers into numbers, and integers too large to be exact as floats into floats when floats are among them.
    Lists and objects are kept as Arrow's nested types (callers decide what they mean).
    """
    kinds = {type(value) for value in values if value is not None}
    if bool in kinds and kinds & {int, float}:
        return None
    if int in kinds and float in kinds and any(type(v) is int and abs(v) > _EXACT_INT for v in values):
        return None
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError):
        return None
