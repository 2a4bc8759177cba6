"""Large files on one machine: numeric columns read as numbers, Part A's correlations
summed over row chunks (equal to the all-rows formula), box plots on a stated, seeded
sample."""
import os
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest

import eda
import part_a
import reader


def test_reader_keeps_numbers_as_numbers(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.integers(0, 9, 500),
                          "c": rng.choice(["x", "y"], 500), "label": rng.integers(0, 3, 500)})
    frame.loc[7, "a"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    got = reader.read_file(tmp_path / "t.csv").frame
    assert got["a"].dtype == np.float64 and got["b"].dtype == np.int64
    assert not pd.api.types.is_numeric_dtype(got["c"]) and np.isnan(got.loc[7, "a"])
    np.testing.assert_allclose(got["a"].to_numpy(), frame["a"].to_numpy(), rtol=1e-15)


@pytest.mark.parametrize("chunk", [7, 64, 100_000])
def test_chunked_correlations_equal_corrcoef(monkeypatch, chunk):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(301, 6))
    X[:, 3] = 2 * X[:, 0] + 0.1 * X[:, 3]        # a strong pair
    X[:, 5] = 4.0                                # a constant: never paired, NaN in the matrix
    monkeypatch.setattr(eda, "CORR_CHUNK_ROWS", chunk)
    corr, pairs = eda.correlation_pairs(X, [f"f{j}" for j in range(6)], threshold=0.5, top_k=4)
    ref = np.corrcoef(X[:, :5], rowvar=False)
    full, _ = eda.correlation_pairs(X, [f"f{j}" for j in range(6)], threshold=0.0, top_k=6)
    np.testing.assert_allclose(full.to_numpy()[:5, :5], ref, atol=1e-12)
    assert np.isnan(full.to_numpy()[5]).all()
    assert list(zip(pairs.feature_a, pairs.feature_b)) == [("f0", "f3")]
    assert abs(pairs.r.iloc[0] - ref[0, 3]) < 1e-12
    assert corr.shape == (4, 4)


def test_figure_sample_is_seeded_bounded_and_in_row_order():
    frame = pd.DataFrame({"a": np.arange(1000.0), "b": np.arange(1000) % 7, "label": np.arange(1000) % 3})
    small = part_a.figure_sample(frame, ["a", "label"], seed=3, limit=5000)
    assert small.shape == (1000, 2)
    s1 = part_a.figure_sample(frame, ["a", "label"], seed=3, limit=100)
    s2 = part_a.figure_sample(frame, ["a", "label"], seed=3, limit=100)
    s3 = part_a.figure_sample(frame, ["a", "label"], seed=4, limit=100)
    assert list(s1.columns) == ["a", "label"] and len(s1) == 100
    assert s1.equals(s2) and not s1.equals(s3)
    assert np.all(np.diff(s1["a"].to_numpy()) > 0)               # row order kept
    assert np.array_equal(s1["label"].to_numpy(), s1["a"].to_numpy().astype(int) % 3)


def test_reference_model_fits_on_a_stated_seeded_sample_above_its_cap(monkeypatch):
    """The underfitting reference (gradient boosting) sees every training row up to
    training.REFERENCE_ROWS and a seeded sample above it (context.analysis_rows, tested in
    test_large_data); the report says so."""
    import types
    import sklearn.ensemble
    import training
    from run_all import _reference_sample
    seen = []
    fit = sklearn.ensemble.HistGradientBoostingClassifier.fit
    monkeypatch.setattr(sklearn.ensemble.HistGradientBoostingClassifier, "fit",
                        lambda self, X, y: seen.append(len(X)) or fit(self, X, y))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] > 0).astype(int)
    data = types.SimpleNamespace(X_train=X[:500], y_train=y[:500], X_val=X[500:], y_val=y[500:])
    assert training.reference_accuracy(data, 0) > 0.8 and seen == [500]
    monkeypatch.setattr(training, "REFERENCE_ROWS", 200)
    assert training.reference_accuracy(data, 0) > 0.8 and seen == [500, 200]
    assert _reference_sample({"reference_rows": 900, "n_fit": 900}) == ""
    assert _reference_sample({"reference_rows": 500_000, "n_fit": 4_000_000}) == \
        ", fitted on a seeded sample of 500,000 of the 4,000,000 training rows"


def test_freed_heap_goes_back_to_the_system_on_glibc():
    """run_all.load gives freed heap back after reading and encoding (glibc's malloc_trim);
    on a glibc Linux (CI's Debian) the call is found and runs."""
    import platform
    from context import release_freed_memory
    blocks = [bytearray(100_000) for _ in range(200)]      # below mmap's threshold: on the heap
    del blocks
    released = release_freed_memory()
    assert released is True or platform.libc_ver()[0] != "glibc"


_HEAP_PROBE = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from context import return_large_blocks
if sys.argv[2] == "set":
    assert return_large_blocks() is True
def private_mb():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Private_Dirty"):
            return int(line.split()[1]) / 1024
a = np.ones(30 << 17); del a            # a 30 MB block freed: glibc's threshold rises to 30 MB
before = private_mb()
b = np.ones(20 << 17); del b            # 20 MB, touched, freed
print(private_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc are Linux's")
def test_freed_large_blocks_leave_the_process():
    """``context.return_large_blocks`` (set by run_all before the workers fork): a freed
    row-sized temporary goes back to the system; by default glibc keeps it on the heap after
    a first large block was freed (measured in a fresh interpreter each)."""
    import platform
    import subprocess
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt(M_MMAP_THRESHOLD) is glibc's")
    root = str(pathlib.Path(__file__).resolve().parents[1])

    # glibc's own defaults: no MALLOC_* tuning (Dask's local cluster, started by other tests,
    # sets MALLOC_TRIM_THRESHOLD_ in this process's environment)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def kept(mode):
        out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, root, mode], capture_output=True,
                             text=True, check=True, env=env).stdout
        return float(out)
    assert kept("default") > 15 and kept("set") < 5


def test_every_networks_predictions_are_held_in_the_smallest_integer_dtype():
    """``training.evaluate`` keeps each split's predictions (the main process holds them for
    every network: 44 MB a network in int64 on a 5-million-row file) in the smallest integer
    dtype that holds their values, equal to ``predict``'s."""
    import types
    import mlp
    from training import evaluate, narrow_labels
    assert narrow_labels(np.array([0, 3, 2])).dtype == np.uint8
    assert narrow_labels(np.array([0, 300])).dtype == np.uint16
    assert narrow_labels(np.array([-1, 200])).dtype == np.int16
    text = np.array(["a", "b"], dtype=object)
    assert narrow_labels(text) is text and narrow_labels(np.array([], dtype=np.int64)).size == 0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    net = mlp.MLP(hidden=(8,), n_iter=30, seed=0).fit(X, y)
    data = types.SimpleNamespace(X=lambda s: X, y=lambda s: None if s == "test" else y)
    scores = evaluate(net, data)
    for split in ("train", "val", "test"):
        p = scores[split]["pred"]
        assert p.dtype == np.uint8
        np.testing.assert_array_equal(p, net.predict(X))
    assert scores["train"]["acc"] == pytest.approx(np.mean(net.predict(X) == y))


def test_scores_from_label_pair_counts_are_scikit_learns_to_the_bit():
    """``training.label_scores`` (scikit-learn on the distinct pairs, weighted by their counts)
    gives ``accuracy_score`` and macro ``f1_score`` exactly, classes missing from either side
    included, without scikit-learn's sorted copies of every row."""
    import warnings
    from sklearn.metrics import accuracy_score, f1_score
    from training import label_scores
    rng = np.random.default_rng(5)
    warnings.simplefilter("ignore")          # scikit-learn's own zero-division warnings
    for _ in range(300):
        n, k = int(rng.integers(1, 2000)), int(rng.integers(1, 9))
        y = rng.integers(0, k, n)
        p = np.where(rng.random(n) < rng.random(), y, rng.integers(0, k + 2, n)).astype(np.uint8)
        assert label_scores(y, p) == (accuracy_score(y, p), f1_score(y, p, average="macro"))
    with pytest.raises(ValueError, match="class indices"):
        label_scores(np.array([0, 1]), np.array([-1, 1]))
    with pytest.raises(ValueError, match="1-D of one non-zero length"):
        label_scores(np.array([0, 1]), np.array([1]))
