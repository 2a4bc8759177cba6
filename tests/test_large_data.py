"""Large files: the permutation checks of Part C run on a stated, seeded sample above
PERMUTATION_ROWS rows, and on every row below it."""
import types

import numpy as np

import part_c
from mlp import MLP


def test_check_rows_is_every_row_below_the_cap_and_a_seeded_sample_above():
    assert np.array_equal(part_c.check_rows(500, 0, cap=1000), np.arange(500))
    a = part_c.check_rows(5000, 3, cap=1000)
    assert len(a) == 1000 and len(np.unique(a)) == 1000 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, part_c.check_rows(5000, 3, cap=1000))
    assert not np.array_equal(a, part_c.check_rows(5000, 4, cap=1000))


def test_attribution_checks_say_how_many_rows_they_used(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3))
    y = (X[:, 0] > 0).astype(int)
    net = MLP(hidden=(8,), n_iter=20, dtype="float64").fit(X, y)
    data = types.SimpleNamespace(feature_names=["a", "b", "c"], feature_source=["a", "b", "c"],
                                 X_train=X, y_train=y,
                                 X=lambda s: X if s == "train" else X[:400],
                                 y=lambda s: y if s == "train" else y[:400])
    cfg = types.SimpleNamespace(study=types.SimpleNamespace(repeats=2), seed=0)
    monkeypatch.setattr(part_c, "PERMUTATION_ROWS", 1000)
    monkeypatch.setattr(part_c.check_rows, "__defaults__", (1000,))
    out = part_c.attribution_checks(data, cfg, "relu", net)
    assert out["permutation_rows"] == {"train": (1000, 3000), "test": (400, 400)}
    top = out["permutation"]["train"]["original"].sort_values("perm_mean").iloc[-1]["feature"]
    assert top == "a"                   # the sample still finds the one column that matters
