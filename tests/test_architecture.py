"""The layering of `core` (DESIGN.md: modules depend downward only), read from the source by
scripts/import_graph.py: the test fails when an upward or sideways import is added."""
from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import import_graph  # noqa: E402


def test_core_imports_run_downward_only():
    edges = import_graph.graph()
    assert "core.swap" in edges and "core.faces.identity" in edges
    assert import_graph.violations(edges) == []


def test_the_check_catches_each_kind_of_bad_edge():
    edges = {"core.swap": {"core.extract", "core.media"}, "core.media": {"core.swap"},
             "core.faces.identity": {"core.faceset", "core.errors"}, "core.farm": {"core.swap"}}
    assert import_graph.violations(edges) == ["core.swap -> core.extract: sideways between stages",
                                              "core.media -> core.swap: upward",
                                              "core.faces.identity -> core.faceset: faces/ is the bottom layer"]


def test_the_modules_of_a_stage_package_may_import_each_other_but_no_other_stage():
    edges = {"core.evaluate.clip": {"core.evaluate.measures", "core.evaluate.pairing", "core.masks"},
             "core.evaluate.controls": {"core.swap", "core.compositing"}}
    assert import_graph.violations(edges) == ["core.evaluate.controls -> core.swap: sideways between stages"]
