"""How ``make test`` shares the suite out among pytest-xdist workers (``-n 2 --dist loadfile``).

A work unit is one test module, as with xdist's ``loadfile``: a module's tests run on one worker, in order, so its
module-scoped fixtures (a Dask cluster, an Airflow home, a trained model) are built once, as in a serial run. Modules
in one of :data:`GROUPS` form a single unit together, so they never run at the same time as each other: the Dask
modules each start a local cluster of two worker processes, and two clusters at once would overload two cores.

The controller schedules by node id alone (it collects nothing), so groups are named by path here, not by a mark;
``tests/unit/test_xdist_groups.py`` checks that every module that starts a Dask cluster is in the ``dask`` group.
xdist's own ``loadgroup`` would read ``xdist_group`` marks, but it silently stops grouping on pytest 9.2
(pytest-dev/pytest-xdist#1386: it rewrites a node id field pytest no longer reads).

Registered by ``tests/conftest.py`` only when xdist is installed, so that plain ``pytest`` needs no xdist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

#: Group name -> test modules (paths from the repository root) that run on one worker, one after another.
GROUPS: dict[str, tuple[str, ...]] = {
    "dask": (
        "tests/integration/batch/test_dask_score.py",
        "tests/integration/data/test_dask_ingest.py",
        "tests/integration/test_cluster.py",
        "tests/integration/test_dask_ingest_s3.py",
        "tests/integration/training/test_dask_train.py",
    ),
}

GROUP_OF: dict[str, str] = {module: f"group:{name}" for name, modules in GROUPS.items() for module in modules}


def work_unit(nodeid: str) -> str:
    """The scheduling unit of a test: its group, else its module."""
    module = nodeid.split("::", 1)[0]
    return GROUP_OF.get(module, module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under ``--dist loadfile``, schedule by :func:`work_unit` (a module, or a group of modules)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupedFiles(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return GroupedFiles(config, log)  # type: ignore[arg-type]
