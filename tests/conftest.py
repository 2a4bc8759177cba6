"""Shared test fixtures: the repository on sys.path and the real-data folder.

The real data lives in ``shared/data`` beside the clone (``<clone>/../shared/data``).
Tests that need it use the ``shared_data_dir`` fixture: it skips when the files
are missing locally, but fails loudly when the ``CI`` environment variable is set.
"""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs real processes for seconds (still runs in CI)")


@pytest.fixture(scope="session", autouse=True)
def _private_math_cache(tmp_path_factory):
    """Rendered math goes to a cache folder of this test session, not the user's."""
    old = os.environ.get("MLP_CACHE_DIR")
    os.environ["MLP_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlp-cache"))
    yield
    if old is None:
        os.environ.pop("MLP_CACHE_DIR", None)
    else:
        os.environ["MLP_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_data_dir():
    """Folder holding the real train.csv and test.csv (fails under CI if absent)."""
    missing = [f for f in ("train.csv", "test.csv") if not (SHARED_DATA / f).is_file()]
    if missing:
        msg = f"real data missing: {', '.join(missing)} not in {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this is an error)")
        pytest.skip(msg)
    return SHARED_DATA


def stub_part(monkeypatch, code, compute, render):
    """Replace part ``code``'s module in ``run_all.PARTS`` by one with these ``compute`` and
    ``render`` (a stand-in module registered in ``sys.modules`` for the test's duration)."""
    import dataclasses
    import types

    import run_all
    name = f"_stub_part_{code.lower()}"
    monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(compute=compute, render=render))
    monkeypatch.setitem(run_all.PARTS, code, dataclasses.replace(run_all.PARTS[code], module=name))
