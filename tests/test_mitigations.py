"""Part D's one table of mitigations (``mitigations.MITIGATIONS``).

The table is checked when it is defined (unique names, known verdict kinds, what
each way of preparing needs), an unknown name raises, the verdict's kinds choose
the rows that answer them, combined options never overwrite each other, and adding
a mitigation is one row: a row added to the table is trained and reported by
Part D with nothing else changed.
"""
import numpy as np
import pandas as pd
import pytest

import mitigations
import part_d
import shift
from mitigations import Mitigation, Prepare
from test_partd import _computed

L2_STRONG = Mitigation("l2_strong", "L2 1e-2", (), Prepare.OPTIONS, "penalise large weights more (L2, 1e-2)",
                       params=(("l2", 1e-2),), combinable=True)


def test_table_is_checked_when_defined():
    good = mitigations.MITIGATIONS
    assert mitigations.check_table(good) is good
    with pytest.raises(ValueError, match="unique.*'l2'"):
        mitigations.check_table(good + (mitigations.get("l2"),))
    with pytest.raises(ValueError, match="unknown verdict kinds \\['sunspots'\\]"):
        mitigations.check_table((Mitigation("x", "x", ("sunspots",), Prepare.OPTIONS, "", params=(("l2", 1),)),))
    with pytest.raises(ValueError, match="sets none"):
        mitigations.check_table((Mitigation("x", "x", (), Prepare.OPTIONS, ""),))
    with pytest.raises(ValueError, match="changes nothing"):
        mitigations.check_table((Mitigation("x", "x", (), Prepare.DATA, ""),))
    with pytest.raises(ValueError, match="no make"):
        mitigations.check_table((Mitigation("x", "x", ("prior_shift",), Prepare.POST_HOC, ""),))
    with pytest.raises(ValueError, match="unknown mitigation 'weight_decay'; known: \\['impute_without_signal'"):
        mitigations.get("weight_decay")
    for m in good:
        assert all(k in shift.KINDS for k in m.answers) and m.explain


def test_merged_options_never_overwrite_each_other():
    a = Mitigation("a", "a", (), Prepare.OPTIONS, "", params=(("l2", 1e-3),), combinable=True)
    b = Mitigation("b", "b", (), Prepare.OPTIONS, "", params=(("l2", 1e-2),), combinable=True)
    c = mitigations.get("class_weight")
    options, used = mitigations.merge_options([a, b, c])
    assert options == {"l2": 1e-3, "class_weight": "balanced"} and used == [a, c]


def test_plan_answers_the_verdict_kinds_in_order_then_the_general_options():
    train, test, target, numeric, categorical, _ = shift.make_shift_dataset("relationship_broken", seed=3,
                                                                          n_train=1500, n_test=700)
    d = shift.diagnose(train, test, target, numeric, categorical, seed=0)
    assert d.verdict.kinds == ("relationship_broken",)
    planned = mitigations.plan(d)
    general = [m for m in mitigations.MITIGATIONS if not m.answers]
    assert [p.mitigation for p in planned[1:]] == general
    first = planned[0]
    assert first.mitigation.name == "drop_features" and first.kinds == ("relationship_broken",)
    assert first.features == tuple(sorted(s.feature for s in d.suspects))
    assert first.name == "remove " + ", ".join(first.features)


def test_adding_a_row_is_all_it_takes(tmp_path, monkeypatch):
    monkeypatch.setattr(mitigations, "MITIGATIONS", mitigations.check_table(mitigations.MITIGATIONS + (L2_STRONG,)))
    train, test, target, *_ = shift.make_shift_dataset("relationship_broken", seed=3, n_train=800, n_test=400)
    ctx = _computed(train, test, target, tmp_path)
    d = ctx.results["D"]
    i = d.kinds.index("l2_strong")
    row = d.mitigations[i]
    assert row["name"] == "L2 1e-2" and d.params[i] == {"l2": 1e-2}
    assert 0 <= row["val_acc"] <= 1 and 0 <= row["test_acc"] <= 1
    assert row["iterations"] == ctx.cfg.iterations                 # trained, for the run's iterations
    assert any(line.startswith("L2 1e-2: validation") for line in part_d._mitigation_lines(d))


def test_indicators_reuse_the_run_matrices_only_when_they_would_be_the_same():
    """Part D's "missing-value indicators" row trains on the run's own matrices (no second
    encoded copy of a large file) exactly when encoding with indicators gives them: no
    feature of the fitting split has a missing value (missing values in validation rows
    only add no column, since the indicators are fitted on the fitting split)."""
    from types import SimpleNamespace
    import part_d
    import prep
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "c": rng.choice(["x", "y"], 200),
                       "y": rng.integers(0, 2, 200)})
    for where in ("none", "val", "fit"):
        frame = df.copy()
        ds0 = prep.validate_frames(frame, frame.iloc[:20], target="y")
        d0 = prep.encode(ds0, val_size=0.25, seed=1)
        if where != "none":
            pos = (d0.val_rows if where == "val" else d0.train_rows)[:3]
            frame.loc[frame.index[pos], "a"] = np.nan
        ds = prep.validate_frames(frame, frame.iloc[:20], target="y")
        d = prep.encode(ds, val_size=0.25, seed=1)
        ctx = SimpleNamespace(dataset=ds, data=d)
        same = part_d._same_encoding(ctx, (("missing_indicators", True),))
        with_ind = prep.encode(ds, val_size=0.25, seed=1, missing_indicators=True)
        really_same = with_ind.X_train.shape == d.X_train.shape and np.array_equal(with_ind.X_train, d.X_train)
        assert same == really_same == (where != "fit"), where
    assert part_d._same_encoding(ctx, ())
    assert not part_d._same_encoding(ctx, (("other", 1),))
