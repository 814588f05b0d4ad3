"""Batch scoring on a Dask cluster (2 worker processes): the single-machine predictions row for row, ids and order
kept through a worker killed mid-run, an atomic output, and the single-machine one-line errors."""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from fasttrack.batch.dask_score import score_dataset
from fasttrack.batch.score import score_file
from fasttrack.cluster import dask_client
from fasttrack.config import TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.data.parts import SUCCESS
from fasttrack.errors import ConfigError, DataError, SchemaValidationError
from fasttrack.export.check import export_to_folder
from fasttrack.registry.model_folder import DataLineage, LoadedModel, load_model_folder, metadata_for, save_model_folder
from fasttrack.training.train import train
from services import Moto

pytestmark = pytest.mark.integration

FILES = 4
ROWS_PER_FILE = 6000
#: Bytes of CSV per partition: each file is read in several blocks, so partitions come from files and blocks.
BLOCKSIZE = 40_000


def training_frame(task: str, rows: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows)
    b = rng.normal(5, 2, rows)
    flag = rng.random(rows) < 0.5
    colour = rng.choice(["red", "green", "blue"], rows).astype(object)
    signal_ = a - (b - 5) / 2 + flag + (colour == "red") + rng.normal(0, 0.3, rows)
    frame = pd.DataFrame({"a": a, "b": b, "flag": flag, "colour": colour})
    frame["y"] = signal_ * 10 + 50 if task == "regression" else np.where(signal_ > 0.5, "yes", "no")
    return frame


def trained_model(task: str, kind: str, folder: Path) -> LoadedModel:
    """A model folder as registration writes it (MLflow sklearn model, FastTrack files, model.onnx)."""
    frame = training_frame(task)
    config = TrainConfig.model_validate(
        {"data": "memory://scoring.csv", "target": "y", "model": kind, "task": task, "cv_folds": 0}
    )
    result = train(frame, config, infer_schema(frame, "y", task))
    staging = folder.parent / f"{folder.name}-staging"
    info, onnx_file = export_to_folder(result.pipeline, result.schema, result.task, result.X_test, staging)
    assert info.status == "ok", info.reason
    assert onnx_file is not None
    lineage = DataLineage(source="memory://scoring.csv", fingerprint="abc", rows=len(frame), columns=5)
    metadata = metadata_for(result, name=f"dask-{task}", data=lineage, onnx=info)
    return load_model_folder(save_model_folder(result, folder, metadata, extra_files=[onnx_file]))


def scoring_input(rows: int, seed: int, first_id: int) -> pd.DataFrame:
    """Data as people send it: text numbers with spaces, missing markers, unseen categories, and ids."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows).round(3).astype(str).astype(object)
    a[::11] = " 0.25 "
    a[5::17] = "?"
    a[7::19] = ""
    b = rng.normal(5, 2, rows).round(2).astype(str).astype(object)
    b[3::13] = "NA"
    flag = rng.choice(["true", "false", "True", " FALSE "], rows).astype(object)
    colour = rng.choice(["red", " green", "blue ", "purple"], rows).astype(object)
    colour[6::31] = "N/A"
    ids = np.array([f"id-{first_id + i:06d}" for i in range(rows)], dtype=object)
    return pd.DataFrame({"id": ids, "a": a, "b": b, "flag": flag, "colour": colour})


def write_files(folder: Path, suffix: str = ".csv", files: int = FILES) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for number in range(files):
        frame = scoring_input(ROWS_PER_FILE, seed=number, first_id=number * ROWS_PER_FILE)
        path = folder / f"input-{number:02d}{suffix}"
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False, row_group_size=2000)
        paths.append(path)
    return paths


def single_machine(model: LoadedModel, paths: list[Path], folder: Path, probabilities: bool) -> pa.Table:
    """The single-machine output of every file, one after the other."""
    folder.mkdir()
    tables = []
    for path in paths:
        out = folder / f"{path.stem}.parquet"
        score_file(model, path, out, probabilities=probabilities)
        tables.append(pq.read_table(out))
    return pa.concat_tables(tables)


def read_output(folder: Path) -> pa.Table:
    """The parts in name order, each read on its own (so row order is the parts' order)."""
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(part) for part in parts])


def both_nan(got: object, want: object) -> bool:
    return isinstance(got, float) and isinstance(want, float) and math.isnan(got) and math.isnan(want)


def assert_same_values(scored: pa.Table, expected: pa.Table) -> None:
    """Every value equal, row for row (NaN equal to NaN; chunks and dictionaries may be laid out differently)."""
    assert scored.column_names == expected.column_names
    for name in scored.column_names:
        got, want = scored.column(name).to_pylist(), expected.column(name).to_pylist()
        assert len(got) == len(want), name
        differ = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w and not both_nan(g, w)]
        assert not differ, (
            f"{name}: {len(differ)} rows differ, first at {differ[0]}: {got[differ[0]]} != {want[differ[0]]}"
        )


def all_ids() -> list[str]:
    return [f"id-{i:06d}" for i in range(FILES * ROWS_PER_FILE)]


@pytest.fixture(scope="module")
def client(moto: Moto) -> Iterator[Client]:
    """The module's cluster; its workers see the S3 server's endpoint and credentials, as workers of a real
    cluster see their store's (docs/scale.md)."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in moto.env().items():
            env.setenv(name, value)
        with dask_client(workers=2) as started:
            yield started


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return trained_model("classification", "hist_gradient_boosting", tmp_path_factory.mktemp("cls") / "model")


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return trained_model("regression", "linear", tmp_path_factory.mktemp("reg") / "model")


@pytest.fixture(scope="module")
def csv_input(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_files(tmp_path_factory.mktemp("data") / "csv")


@pytest.fixture(autouse=True)
def two_workers(client: Client) -> None:
    """Every test starts with both workers (a test that kills one waits for its nanny to restart it)."""
    client.wait_for_workers(2, timeout=60)


def test_classifier_matches_single_machine_row_for_row(
    client: Client, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    output = tmp_path / "scored"
    done: list[tuple[int, int]] = []
    summary = score_dataset(
        classifier,
        str(csv_input[0].parent),
        str(output),
        client=client,
        probabilities=True,
        blocksize=BLOCKSIZE,
        progress=lambda finished, total: done.append((finished, total)),
    )
    assert summary.rows == FILES * ROWS_PER_FILE
    assert summary.partitions > 2 * FILES  # several blocks per file
    assert (summary.engine, summary.workers) == ("onnx", 2)
    assert [d for d, _ in done] == list(range(1, summary.partitions + 1))
    assert {t for _, t in done} == {summary.partitions}

    expected = single_machine(classifier, csv_input, tmp_path / "single", probabilities=True)
    scored = read_output(output)
    assert scored.column_names == ["id", "a", "b", "flag", "colour", "prediction", "probability_no", "probability_yes"]
    assert scored.schema == expected.schema
    assert scored.column("id").to_pylist() == all_ids()
    assert_same_values(scored, expected)  # features as normalised, predictions, probabilities
    assert pq.read_table(output).num_rows == summary.rows  # readers of the folder skip _SUCCESS

    marker = json.loads((output / SUCCESS).read_text())
    assert (marker["rows"], marker["partitions"], marker["engine"]) == (summary.rows, summary.partitions, "onnx")
    assert marker["parts"] == sorted(p.name for p in output.glob("part-*.parquet"))
    assert marker["model"]["name"] == "dask-classification" and marker["created"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored", "single"]  # no staging folder left


def test_regressor_on_parquet_matches_single_machine(client: Client, regressor: LoadedModel, tmp_path: Path) -> None:
    paths = write_files(tmp_path / "parquet", ".parquet")
    output = tmp_path / "scored"
    summary = score_dataset(regressor, str(tmp_path / "parquet" / "*.parquet"), str(output), client=client)
    assert summary.rows == FILES * ROWS_PER_FILE
    expected = single_machine(regressor, paths, tmp_path / "single", probabilities=False)
    scored = read_output(output)
    assert scored.column("id").to_pylist() == all_ids()
    assert scored.schema == expected.schema
    assert_same_values(scored, expected)


def test_sklearn_runtime_is_the_one_workers_use(
    client: Client, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    summary = score_dataset(
        classifier.path, str(csv_input[0]), str(tmp_path / "scored"), client=client, runtime="sklearn"
    )
    assert summary.engine == "sklearn"
    single = tmp_path / "single.parquet"
    score_file(classifier, csv_input[0], single, engine="sklearn")
    assert_same_values(read_output(tmp_path / "scored"), pq.read_table(single))


def test_a_worker_killed_while_scoring_loses_and_duplicates_nothing(
    client: Client, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    pids: dict[str, int] = client.run(os.getpid)
    victim = sorted(pids)[0]
    killed: list[int] = []

    def kill_once(finished: int, total: int) -> None:
        # After the first partition, while the others are queued or running on both workers.
        if not killed:
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(pids[victim])

    output = tmp_path / "scored"
    summary = score_dataset(
        classifier,
        str(csv_input[0].parent),
        str(output),
        client=client,
        probabilities=True,
        blocksize=BLOCKSIZE // 4,  # many small partitions: the kill lands with most of them still to do
        progress=kill_once,
    )
    assert killed
    assert summary.rows == FILES * ROWS_PER_FILE
    ids = read_output(output).column("id").to_pylist()
    assert ids == all_ids()  # every id exactly once, in order
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.run(os.getpid).values()  # the worker was really replaced


def test_a_failure_half_way_leaves_the_earlier_output(
    client: Client, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    output = tmp_path / "scored"
    score_dataset(classifier, str(csv_input[0]), str(output), client=client)
    earlier = {p.name: p.read_bytes() for p in output.iterdir()}

    bad = tmp_path / "bad"
    bad.mkdir()
    for path in csv_input:
        (bad / path.name).write_bytes(path.read_bytes())
    frame = pd.read_csv(csv_input[-1], dtype=str, keep_default_na=False)
    frame.loc[ROWS_PER_FILE - 5, "b"] = "lots"  # near the end of the last file
    frame.to_csv(bad / csv_input[-1].name, index=False)
    with pytest.raises(SchemaValidationError) as single:
        score_file(classifier, bad / csv_input[-1].name, tmp_path / "single.csv")

    for target in (output, tmp_path / "new"):
        with pytest.raises(SchemaValidationError) as raised:
            score_dataset(classifier, str(bad), str(target), client=client, blocksize=BLOCKSIZE)
        assert str(raised.value) == str(single.value)
        assert "b: expected a number, got 'lots' (1 rows)" in str(raised.value)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == earlier  # untouched
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "scored"]  # no staging folder left


def test_problems_are_the_single_machine_one_line_errors(
    client: Client, classifier: LoadedModel, regressor: LoadedModel, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    scoring_input(50, seed=0, first_id=0).drop(columns=["b"]).to_csv(source, index=False)
    with pytest.raises(SchemaValidationError, match="b: required column is missing") as single:
        score_file(classifier, source, tmp_path / "out.parquet")
    with pytest.raises(SchemaValidationError) as raised:
        score_dataset(classifier, str(source), str(tmp_path / "out"), client=client)
    assert str(raised.value) == str(single.value)

    scoring_input(50, seed=0, first_id=0).to_csv(source, index=False)
    with pytest.raises(ConfigError, match="regressor"):
        score_dataset(regressor, str(source), str(tmp_path / "out"), client=client, probabilities=True)
    header_only = tmp_path / "header" / "empty.csv"
    header_only.parent.mkdir()
    header_only.write_text("id,a,b,flag,colour\n")
    with pytest.raises(DataError, match="has a header but no data rows"):
        score_dataset(classifier, str(header_only), str(tmp_path / "out"), client=client)
    with pytest.raises(DataError, match="no such file or folder"):
        score_dataset(classifier, str(tmp_path / "absent.csv"), str(tmp_path / "out"), client=client)
    broken = tmp_path / "broken" / "broken.csv"
    broken.parent.mkdir()
    broken.write_text('id,a,b,flag,colour\n1,2,3,true,red\n"2,3,4\n5,6,7,8,9,10,11\n')
    with pytest.raises(DataError, match=r"^cannot read .*broken") as unreadable:
        score_dataset(classifier, str(broken), str(tmp_path / "out"), client=client)
    assert "\n" not in str(unreadable.value)
    with pytest.raises(ConfigError, match="folder of Parquet parts"):
        score_dataset(classifier, str(source), str(tmp_path / "out.csv"), client=client)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("not a scoring output")
    with pytest.raises(ConfigError, match="not a scoring output"):
        score_dataset(classifier, str(source), str(tmp_path / "precious"), client=client)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "not a scoring output"
    assert not (tmp_path / "out").exists()


def test_an_object_store_output_is_complete_when_its_marker_is_there(
    client: Client, moto: Moto, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    import s3fs

    bucket = "fasttrack-dask-scoring"
    s3 = moto.client()
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    for path in csv_input:
        s3.upload_file(str(path), bucket, f"in/{path.name}")  # type: ignore[attr-defined]
    output = f"s3://{bucket}/out/scored"
    store = s3fs.S3FileSystem(endpoint_url=moto.url, key=moto.access_key, secret=moto.secret_key)
    expected = single_machine(classifier, csv_input, tmp_path / "single", probabilities=False)
    for blocksize in (BLOCKSIZE // 2, BLOCKSIZE):  # the second run replaces the first's (more) parts
        summary = score_dataset(classifier, f"s3://{bucket}/in/", output, client=client, blocksize=blocksize)
        store.invalidate_cache()
        marker = json.loads(store.cat(f"{bucket}/out/scored/{SUCCESS}"))
        assert marker["rows"] == summary.rows == FILES * ROWS_PER_FILE
        listed = sorted(PurePosixPath(p).name for p in store.find(f"{bucket}/out/scored"))
        assert listed == sorted([*marker["parts"], SUCCESS])  # no part of the earlier run left over
        parts = [pq.read_table(store.open(f"{bucket}/out/scored/{part}")) for part in marker["parts"]]
        assert_same_values(pa.concat_tables(parts), expected)
    assert [PurePosixPath(p).name for p in store.ls(f"{bucket}/out")] == ["scored"]  # staging prefixes gone


def test_the_python_api_scores_on_a_cluster_it_is_given(
    client: Client, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    import fasttrack

    done: list[int] = []
    summary = fasttrack.score_file(
        classifier.path,
        str(csv_input[0].parent / "input-*.csv"),
        tmp_path / "scored",
        engine="dask",
        scheduler=client,  # the caller's own client: used as it is and left open
        progress=lambda finished, _: done.append(finished),
    )
    assert summary.rows == FILES * ROWS_PER_FILE and done[-1] == summary.partitions
    assert read_output(tmp_path / "scored").column("id").to_pylist() == all_ids()
    assert client.status == "running"


def test_the_command_scores_on_a_scheduler_by_address(
    client: Client, classifier: LoadedModel, csv_input: list[Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    address = client.scheduler_info()["address"]
    output = tmp_path / "scored"
    command = [sys.executable, "-m", "fasttrack", "predict", "--model", str(classifier.path)]
    command += ["--data", str(csv_input[0].parent), "--out", str(output), "--engine", "dask", "--scheduler", address]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{FILES * ROWS_PER_FILE} predictions written to {output} (onnx, " in done.stdout
    assert "on 2 Dask workers" in done.stdout
    assert read_output(output).column("id").to_pylist() == all_ids()

    # A scheduler that does not answer: one line, exit 1, nothing written.
    refused = subprocess.run(
        [*command[:-1], "tcp://127.0.0.1:9", "--out", str(tmp_path / "never")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert lines == [f"error: cannot reach the Dask scheduler at tcp://127.0.0.1:9: {lines[0].split(': ', 2)[2]}"]
    assert "Traceback" not in refused.stderr and not (tmp_path / "never").exists()
