"""Reading a data set that outgrows one machine: a file, a glob or a folder of CSV or Parquet files, as a Dask
DataFrame (docs/scale.md).

:func:`dataset_files` expands the source (local or any fsspec URL such as ``s3://``) into its files, in name
order, so partitions keep the rows' order file by file. :func:`read_dask` reads them lazily; every partition has
the same columns and dtypes (the ones given, else text for CSV, else the first Parquet file's), so Dask never
meets "mismatched dtypes" between partitions half-way through a job. Values keep the meaning the single-machine
reader gives them: an empty CSV field stays an empty string (cleaning and the feature contract decide what is
missing), and nothing is parsed as a date.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from fasttrack.data.sniff import BOM, EXTENSIONS, SNIFF_BYTES, is_url, resolve_format, sniff_delimiter, stem_suffix
from fasttrack.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Callable

    import dask.dataframe as dd
    from dask.delayed import Delayed
    from distributed import Client

#: Bytes of a CSV file per partition: small enough that a worker holds several, large enough to amortise a task.
DEFAULT_BLOCKSIZE = 64 * 2**20
#: Formats a Dask engine reads; JSON is read by the single-machine engine only.
DASK_FORMATS = ("csv", "parquet")
_GLOB = ("*", "?", "[")


def dataset_files(
    source: str, *, format: str | None = None, storage_options: dict[str, Any] | None = None
) -> tuple[list[str], str]:
    """The files of ``source`` (a file, a glob such as ``data/part-*.csv``, or a folder) in name order, and their
    format (``csv`` or ``parquet``).

    A folder's files are those whose extension names a format (``.csv``, ``.csv.gz``, ``.parquet``, ...);
    hidden files and markers (``_SUCCESS``, ``.part``) are skipped. Every file must have the same format.

    Raises
    ------
    DataError
        Nothing matches, or the files mix formats.
    ConfigError
        The format is one the Dask engine does not read (JSON).
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(source, **(storage_options or {}))
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    if any(char in source for char in _GLOB):
        found = sorted(fs.glob(root))
    elif fs.isdir(root):
        found = sorted(path for path in fs.find(root) if _is_data_file(path))
    elif fs.exists(root):
        found = [root]
    else:
        raise DataError(f"no such file or folder: {source}")
    files = [p for p in found if not PurePosixPath(p).name.startswith((".", "_"))]
    if not files:
        raise DataError(f"no data files in {source}")
    formats = {resolve_format(path, format)[0] for path in files}
    if len(formats) > 1:
        raise DataError(f"{source} mixes formats ({', '.join(sorted(formats))}): give one format per data set")
    fmt = formats.pop()
    if fmt not in DASK_FORMATS:
        raise ConfigError(f"the Dask engine reads CSV or Parquet, not {fmt}: convert it or use --engine local")
    if is_url(source) and protocol not in ("file", "local"):
        files = [f"{protocol}://{path}" for path in files]
    return files, fmt


def read_dask(
    source: str,
    *,
    format: str | None = None,
    dtypes: Mapping[str, str] | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    delimiter: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dd.DataFrame:
    """``source`` (see :func:`dataset_files`) as a lazy Dask DataFrame, partitions in file and row order.

    ``dtypes`` maps column names to pandas dtypes (the schema's, when there is one); CSV columns not named are
    read as text (pandas' ``str``), so every partition agrees whatever its values. Parquet columns are cast to
    ``dtypes`` where named. CSV delimiters are sniffed from the first file unless ``delimiter`` is given.
    """
    import dask.dataframe as dd

    files, fmt = dataset_files(source, format=format, storage_options=storage_options)
    options = storage_options or {}
    if fmt == "parquet":
        frame = dd.read_parquet(files, storage_options=options or None)
        named = {col: dtype for col, dtype in (dtypes or {}).items() if col in frame.columns}
        return cast("dd.DataFrame", frame.astype(named) if named else frame)
    _, sep, columns = csv_header(files[0], delimiter, options)
    types: dict[str, str] = dict.fromkeys(columns, "str")
    types.update({col: dtype for col, dtype in (dtypes or {}).items() if col in types})
    compression = "gzip" if any(path.endswith(".gz") for path in files) else None
    frame = dd.read_csv(
        files,
        sep=sep,
        dtype=types,
        keep_default_na=False,
        na_values=[],
        blocksize=None if compression else blocksize,
        compression=compression,
        storage_options=options or None,
    )
    return cast("dd.DataFrame", frame)


def _is_data_file(path: str) -> bool:
    """Whether a folder's file is data: its extension names a format the Dask engine reads."""
    return EXTENSIONS.get(stem_suffix(path) or "") in DASK_FORMATS


def csv_header(path: str, delimiter: str | None, storage_options: dict[str, Any]) -> tuple[bytes, str, list[str]]:
    """A CSV file's header line (bytes, ending in a newline), its delimiter (sniffed unless given) and its column
    names, as the single-machine reader parses them (:func:`fasttrack.data.ingest.csv_table`)."""
    import fsspec

    from fasttrack.data.ingest import csv_table

    with fsspec.open(path, "rb", compression="infer", **storage_options) as handle:
        head = handle.read(SNIFF_BYTES).removeprefix(BOM)
    if not head.strip():
        raise DataError(f"empty file: {path}")
    line = head.splitlines(keepends=True)[0]
    line = line if line.endswith((b"\n", b"\r")) else line + b"\n"
    text = head.decode("utf-8", errors="replace")
    sep = delimiter or ("\t" if stem_suffix(path) == "tsv" else sniff_delimiter(text, len(head) == SNIFF_BYTES))
    return line, sep, list(csv_table(line, path, sep).column_names)


def current_client(client: Client | None) -> Client:
    """``client``, else the default client (the one :func:`fasttrack.cluster.dask_client` opened)."""
    if client is not None:
        return client
    from distributed import default_client

    return cast("Client", default_client())  # type: ignore[no-untyped-call]


def partitions(frame: dd.DataFrame) -> list[Delayed]:
    """A Dask frame's partitions, in order, as delayed pandas frames."""
    return cast("list[Delayed]", frame.to_delayed())  # type: ignore[no-untyped-call]


def as_task(function: Callable[..., Any]) -> Callable[..., Delayed]:
    """``function`` as a Dask task maker: calling the result with (delayed) arguments gives a delayed call."""
    from dask.delayed import delayed

    return cast("Callable[..., Delayed]", delayed(function, pure=True))


def small_results(client: Client, tasks: Any) -> Any:
    """Compute ``tasks`` (any nesting of delayed values and collections) on the cluster and bring the results
    here: for statistics and other small results, never a data set."""
    from dask.base import compute

    return compute(tasks, scheduler=client.get)[0]  # type: ignore[no-untyped-call]
