"""Stable train/test splits: a row's part follows from its content, and every model records the rows it trained on.

A random split draws a new test part in every run, so the rows one version held out are largely rows another
version trained on, and a champion/challenger comparison on them favours whichever version saw them. Here a row's
part is decided by a hash of its content and the config's ``split_salt``: the same row lands in the same part in
every run with that salt, whatever else the file holds, so adding rows to a data set never moves its existing rows
between parts, and reordering them changes nothing.

**What "content" is.** A row's hash covers its feature values and its target, each in the canonical form the
feature contract (:mod:`fasttrack.features`) gives it, not as the reader typed it: a number is the float64 the model
sees (``3``, ``3.0`` and ``"3"`` in a numeric column are one value, so a column read as integers once and as floats
the next time, because it gained a missing value, hashes alike), a category is its stripped text (``category`` or
``str`` dtype alike), every missing value is one missing value, and the target is its label as category text (``1``
and ``1.0`` alike) or, for a regression, its float64 value. Features are taken in name order, so reordering
columns changes nothing. Columns the model does not use (identifiers, columns cleaning dropped) are not part of the
content. What does change a row's hash: another set of features (``keep_columns``, ``drop_columns``), a feature whose
kind changes (numeric to categorical), or another value; two rows with the same content are one row to the split
(both train or both test), which keeps exact duplicates from straddling the two parts.

**The hash.** :func:`pandas.util.hash_pandas_object` (SipHash of text with a pinned key, a 64-bit mix of numbers,
combined across columns; pandas pins its output in its own test suite, ``test_consistency``), on those canonical
columns: one ``uint64`` per row, independent of the salt so that versions trained with different salts can still
be compared row by row. Values are made canonical here before hashing (``-0.0`` as ``0.0``, one NaN), so the hashes
do not depend on pandas doing it too (pandas 3 started to, GH#28363). The part: the row hash XOR a 64-bit digest of
the salt (BLAKE2b), mixed again by :func:`pandas.util.hash_array`, read as a fraction in [0, 1); rows below
``test_size`` are held out.

**Stratification** cannot be exact: each row falls in the test part with probability ``test_size`` on its own, so
each class's share of the test part is ``test_size`` only approximately (a binomial draw; for 10,000 rows of a class
at 0.2, 2,000 ± 40). A class with few rows may fall entirely in one part; the evaluation's notes then say so, as they
did when a class was too rare for a stratified split. A part left empty (only with a handful of rows) takes the one
row nearest the threshold, with a note.

:class:`TrainingRows` is the record of the rows a model trained on: the sorted distinct row hashes, written as
``reports/train_rows.parquet`` beside the held-out part (8 bytes per distinct row before Parquet's delta encoding,
about 7.7 MB per million rows).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from fasttrack.config import ResolvedTask
from fasttrack.data.schema import Schema
from fasttrack.errors import DataError
from fasttrack.features.columns import CategoricalColumn
from fasttrack.features.frames import frame_input
from fasttrack.features.rules import Invalid, Rules

#: The name of this hashing scheme, stored with every record: a record of another scheme cannot be compared.
HASH_SCHEME: Final = "fasttrack-row-hash-1"
#: pandas' default SipHash key, pinned here so that a change of pandas' default cannot move rows.
_HASH_KEY: Final = "0123456789123456"
_COLUMN: Final = "row_hash"
_METADATA_KEY: Final = b"fasttrack.training_rows"
#: 2**-53: a 53-bit integer times this is a float in [0, 1) with every bit significant.
_UNIT: Final = 2.0**-53


def row_hashes(frame: pd.DataFrame, schema: Schema) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """One ``uint64`` per row of ``frame``: the hash of its features and target in canonical form (module docstring).

    ``frame`` may be raw cleaned data or prepared model input (the held-out part): both give the same hashes, as
    both go through the feature contract. Raises :class:`~fasttrack.errors.DataError` naming the columns when a
    feature or the target is absent, since rows without them cannot be matched with anything recorded.
    """
    target = schema.target.name
    absent = [name for name in hashed_columns(schema) if name not in frame.columns]
    if absent:
        raise DataError(f"the rows cannot be identified without the column(s) {', '.join(map(repr, absent))}")
    rules = Rules(schema.missing_markers)
    converted = frame_input(frame, schema, rules)
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for name in sorted(schema.feature_names):
        values = converted.columns[name]
        if isinstance(values, CategoricalColumn):
            columns[name] = values.values(None)
        else:
            columns[name] = _canonical_floats(values)
    columns[target] = _canonical_target(frame[target], schema.target.task, rules)
    # Text stays an ``object`` column: pandas would otherwise give it its own ``str`` dtype, hashed by another path.
    table = pd.DataFrame({name: pd.Series(values, dtype=values.dtype, copy=False) for name, values in columns.items()})
    hashed = pd.util.hash_pandas_object(table, index=False, hash_key=_HASH_KEY)
    return np.asarray(hashed.to_numpy(), dtype=np.uint64)


def hashed_columns(schema: Schema) -> tuple[str, ...]:
    """The columns a row's hash covers, in hashing order: the features by name, then the target."""
    return (*sorted(schema.feature_names), schema.target.name)


def split_fraction(hashes: np.ndarray[Any, np.dtype[np.uint64]], salt: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Each row's place in [0, 1) for ``salt``: rows below ``test_size`` are held out (see the module docstring).

    Uniform over rows, and independent across salts; a row's place depends only on its own hash and the salt.
    """
    salted = np.asarray(hashes, dtype=np.uint64) ^ _salt_bits(salt)
    mixed = pd.util.hash_array(salted)
    return (mixed >> np.uint64(11)).astype(np.float64) * _UNIT


@dataclass(frozen=True)
class TrainingRows:
    """The rows a model trained on: the sorted distinct row hashes (:func:`row_hashes`) of its training part.

    ``rows`` counts the training rows (duplicates included), ``columns`` the hashed columns in order, ``scheme``
    the hashing scheme and ``salt`` the split salt of the run. :meth:`contains` tells which of some rows' hashes
    are among them.
    """

    hashes: np.ndarray[Any, np.dtype[np.uint64]]
    rows: int
    columns: tuple[str, ...]
    salt: str
    scheme: str = HASH_SCHEME

    @classmethod
    def of(cls, hashes: np.ndarray[Any, np.dtype[np.uint64]], schema: Schema, salt: str) -> TrainingRows:
        """The record of a training part whose row hashes are ``hashes``."""
        return cls(np.unique(np.asarray(hashes, dtype=np.uint64)), len(hashes), hashed_columns(schema), salt)

    def contains(self, hashes: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """A mask over ``hashes``: ``True`` where the row is one this model trained on (a sorted search)."""
        found = np.asarray(hashes, dtype=np.uint64)
        if not len(self.hashes):
            return np.zeros(len(found), dtype=bool)
        place = np.minimum(np.searchsorted(self.hashes, found), len(self.hashes) - 1)
        return np.asarray(self.hashes[place] == found, dtype=bool)

    def comparable(self, schema: Schema) -> bool:
        """Whether rows hashed for ``schema`` today can be matched with this record (same scheme and columns)."""
        return self.scheme == HASH_SCHEME and self.columns == hashed_columns(schema)

    def write(self, path: Path) -> None:
        """Write the record as Parquet: one ``uint64`` column, delta-encoded (it is sorted), and the rest as
        schema metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        described = {"rows": self.rows, "columns": list(self.columns), "salt": self.salt, "scheme": self.scheme}
        table = pa.table({_COLUMN: pa.array(self.hashes, type=pa.uint64())})
        table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(described).encode()})
        pq.write_table(
            table, path, use_dictionary=False, column_encoding={_COLUMN: "DELTA_BINARY_PACKED"}, compression="none"
        )

    @classmethod
    def read(cls, path: Path) -> TrainingRows:
        """Read a record :meth:`write` wrote."""
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        described = json.loads((table.schema.metadata or {})[_METADATA_KEY])
        hashes = np.asarray(table.column(_COLUMN).to_numpy(), dtype=np.uint64)
        return cls(
            hashes, int(described["rows"]), tuple(described["columns"]), str(described["salt"]), described["scheme"]
        )


def _canonical_floats(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Floats whose bits depend on the value only: ``-0.0`` as ``0.0`` and every NaN as the one ``np.nan``."""
    floats = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 + 0.0 is 0.0
    floats[np.isnan(floats)] = np.nan
    return floats


def _canonical_target(values: pd.Series[Any], task: ResolvedTask, rules: Rules) -> np.ndarray[Any, Any]:
    """The target as the hash sees it: a regression's float64 value, or a label as category text."""
    if task == "regression":
        return _canonical_floats(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    texts = [rules.category(value) for value in uniques]
    table = np.array([None if isinstance(text, Invalid) else text for text in texts] + [None], dtype=object)
    return table[codes]  # -1 (missing) picks the last entry, None


def _salt_bits(salt: str) -> np.uint64:
    """A 64-bit digest of the salt (BLAKE2b), to XOR into the row hashes."""
    digest = hashlib.blake2b(salt.encode("utf-8"), digest_size=8, person=b"fasttrack-split").digest()
    return np.frombuffer(digest, dtype="<u8")[0]  # type: ignore[no-any-return]
