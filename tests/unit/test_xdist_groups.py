"""tests/xdist_groups.py: how ``make test`` shares modules out among xdist workers stays true to the tests."""

from __future__ import annotations

import re

from support import REPO
from xdist_groups import GROUPS, work_unit

#: What starts a local Dask cluster of worker processes in a test module.
STARTS_A_CLUSTER = re.compile(r"dask_client\(\s*workers=|LocalCluster\(")


def test_every_module_that_starts_a_dask_cluster_is_in_the_dask_group() -> None:
    starting = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "tests").rglob("test_*.py")
        if STARTS_A_CLUSTER.search(path.read_text(encoding="utf-8"))
    }
    assert starting, "no test module starts a Dask cluster: the pattern no longer matches the tests"
    assert starting <= set(GROUPS["dask"]), sorted(starting - set(GROUPS["dask"]))


def test_every_grouped_module_exists() -> None:
    missing = [module for modules in GROUPS.values() for module in modules if not (REPO / module).is_file()]
    assert missing == []


def test_a_module_is_a_unit_unless_it_is_in_a_group() -> None:
    assert work_unit("tests/unit/test_api.py::test_train[linear]") == "tests/unit/test_api.py"
    assert work_unit("tests/unit/test_api.py::TestX::test_y") == "tests/unit/test_api.py"
    dask = {work_unit(f"{module}::test_x") for module in GROUPS["dask"]}
    assert dask == {"group:dask"}
