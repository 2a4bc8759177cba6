"""Tests for run_all.py: option validation, error reporting, part dispatch and outputs.

The part functions are replaced by tiny stand-ins here, so these tests check the
frame (dispatch, isolation, files written) and stay fast whatever the parts do.
"""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import context
import part_d
import run_all
from conftest import stub_part

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "run_all.py", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0]


def write_pair(folder, n_train=80, n_test=30, target="label", seed=0):
    """A small valid CSV pair: two numeric features, one categorical, three classes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.csv", n_train), ("test.csv", n_test)):
        pd.DataFrame({"size": rng.normal(size=n).round(3), "age": rng.integers(0, 50, n),
                      "colour": rng.choice(["red", "green", "blue"], n),
                      target: np.arange(n) % 3}).to_csv(folder / name, index=False)
    return folder


# ------------------------------------------------------------ subprocess CLI
def test_help_lists_every_option():
    res = cli("--help")
    assert res.returncode == 0
    for opt in ("--data-dir", "--target", "--categorical", "--drop", "--out", "--parts",
                "--iterations", "--lr", "--hidden", "--activations", "--seed", "--dtype",
                "--threads", "--quick", "--corr-threshold", "--train", "--test", "--test-size",
                "--sep", "--keep-columns", "--expand-dates"):
        assert opt in res.stdout, opt


def test_unknown_part_is_one_line_error():
    _one_line_error(cli("--parts", "A,E"), "--parts", "'E'")


def test_bad_hidden_is_one_line_error():
    _one_line_error(cli("--hidden", "64,x"), "--hidden", "64,x")


def test_unknown_option_is_one_line_error():
    _one_line_error(cli("--iterationz", "3"), "--iterationz")


def test_bad_csv_pair_is_one_line_error(tmp_path):
    data = write_pair(tmp_path / "data", target="label")
    res = cli("--data-dir", str(data), "--target", "price_class", "--out", str(tmp_path / "out"))
    _one_line_error(res, "price_class")


def test_missing_data_dir_is_one_line_error(tmp_path, capsys):
    # in-process (importing prep in a fresh interpreter is slow); same code path as the CLI
    assert run_all.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "config.json").exists()


# ------------------------------------------------------------- validation
def parse(*args):
    return run_all.validate(run_all.build_parser().parse_args(list(args)))


@pytest.mark.parametrize("value, expected", [
    ("A,B,C,D,Q2", ("A", "B", "C", "D", "Q2")),
    ("q2,a", ("A", "Q2")),                      # run order, not the order given
    ("Ba,B(b), bb", ("B",)),
    ("c(a),Part-D", ("C", "D")),
    ("all", ("A", "B", "C", "D", "Q2")),
])
def test_parts_aliases(value, expected):
    assert run_all.parse_parts(value) == expected


@pytest.mark.parametrize("args, match", [
    (["--parts", "B(c)"], r"--parts: unknown part 'B\(c\)'"),
    (["--parts", "A,,B"], "--parts: unknown part ''"),
    (["--hidden", "64,0"], "--hidden: layer widths must be positive"),
    (["--hidden", ""], "--hidden"),
    (["--activations", "relu,swish"], "--activations: unknown activation 'swish'"),
    (["--activations", "relu,relu"], "--activations: an activation is listed twice"),
    (["--iterations", "0"], "--iterations: must be at least 1, got 0"),
    (["--lr", "0"], "--lr: must be a positive finite number"),
    (["--lr", "nan"], "--lr"),
    (["--seed", "-1"], "--seed"),
    (["--dtype", "float16"], "--dtype: must be float64 or float32, got 'float16'"),
    (["--threads", "0"], "--threads: must be between 1 and"),
    (["--corr-threshold", "1.5"], r"--corr-threshold: must be in \(0, 1\], got 1.5"),
    (["--drop", "price_class"], "--drop: cannot drop the target column 'price_class'"),
    (["--categorical", "a,,b"], "--categorical: empty column name"),
    (["--categorical", "a", "--drop", "a"], "--categorical/--drop: column 'a' is in both lists"),
    (["--iterations", "many"], "--iterations: invalid int value: 'many'"),
])
def test_validation_names_option_and_value(args, match):
    with pytest.raises(run_all.UsageError, match=match):
        parse(*args)


def test_quick_shrinks_defaults_but_not_explicit_iterations():
    full, quick = parse(), parse("--quick")
    assert full.iterations == run_all.DEFAULTS["iterations"] == 200
    assert quick.iterations == run_all.DEFAULTS["quick_iterations"] < full.iterations
    assert quick.study.repeats < full.study.repeats and len(quick.study.q2_lrs) < len(full.study.q2_lrs)
    assert quick.study.q2_iterations < full.study.q2_iterations and quick.study.q2_seeds < full.study.q2_seeds
    assert parse("--quick", "--iterations", "7").iterations == 7
    cfg = parse("--hidden", "8,4,2", "--activations", "Sigmoid", "--categorical", "a, b")
    assert cfg.hidden == (8, 4, 2) and cfg.activations == ("sigmoid",) and cfg.categorical == ("a", "b")


def test_plan_adds_prerequisites():
    assert run_all.plan(("D",)) == ("B", "D")
    assert run_all.plan(("Q2", "C")) == ("B", "C", "Q2")
    assert run_all.plan(("A",)) == ("A",)


# --------------------------------------------------------- in-process runs
class _StubResult:
    """A stand-in part result: one number, and what the summary reads."""

    def __init__(self, code, accuracy=None, summary_sentences=(), mitigations=None):
        self.code, self.accuracy, self.headline = code, accuracy or {}, f"stub {code}"
        # Part D's fields that the summary reads (see part_d.DResult)
        self.summary_sentences, self.mitigations = list(summary_sentences), mitigations
        self.by_val, self.fix, self.root_cause = 1, None, False
        self.network, self.split_accuracy = "relu", {"relu": dict(self.accuracy.get("relu", {}))}

    def to_metrics(self):
        return {"value": np.float64(0.5)}


@pytest.fixture
def stub_parts(monkeypatch):
    """Replace every part by a stand-in that records a number and declares no jobs;
    part B's rendering raises when asked (``--seed 13``)."""
    calls = []

    def compute(code):
        def part(ctx):
            calls.append(code)
            if code == "B":
                return _StubResult(code, accuracy={"relu": {"train": 0.9, "val": 0.8}})
            if code == "D":
                assert ctx.results["B"].code == "B"        # D reads B's result
                return _StubResult(code, accuracy={"relu": {"test": 0.4}}, summary_sentences=["a shifted feature"],
                                   mitigations=[{"name": "baseline", "val_acc": 0.7, "test_acc": 0.4},
                                                {"name": "drop it", "val_acc": 0.8, "test_acc": 0.7}])
            return _StubResult(code)
        return part

    def render(res, out):
        out.report.para(f"ran {res.code}")
        if res.code == "B" and seed[0] == 13:  # the failure switch
            raise RuntimeError("boom in B\nsecond line")

    seed = [None]

    def schedule(ctx):          # no real trainings behind the stand-ins
        seed[0] = ctx.cfg.seed
        return context.Schedule()

    monkeypatch.setattr(run_all, "schedule", schedule)
    for code in list(run_all.PARTS):
        stub_part(monkeypatch, code, compute(code), render)
    return calls


def test_main_writes_config_metrics_and_report(tmp_path, stub_parts, capsys):
    data, out = write_pair(tmp_path / "data"), tmp_path / "out"
    rc = run_all.main(["--data-dir", str(data), "--target", "label", "--out", str(out),
                       "--parts", "A,D", "--threads", "1"])
    assert rc == 0
    assert stub_parts == ["A", "B", "D"]  # B runs first because D needs it
    config = json.loads((out / "config.json").read_text())
    assert config["data_dir_resolved"] == str(data.resolve())
    assert config["numba_threads"] == 1 and config["parts"] == ["A", "D"]
    assert set(config["versions"]) >= {"numpy", "numba", "scikit-learn", "pandas"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["n_test"] == 30 and metrics["data"]["n_classes"] == 3
    assert metrics["partA"]["value"] == 0.5
    assert set(metrics["timing"]) - {"cpu_main", "cpu_workers"} == {"data", "partA", "partB", "partD",
                                                                   "total", "workers"}
    assert metrics["timing"]["workers"] == 0                # --threads 1: no worker processes
    assert metrics["timing"]["cpu_main"] > 0 and config["worker_processes"] == 0
    assert "partC" not in metrics and "q2" not in metrics
    md = (out / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Part A")
    assert "| relu | 0.900 | 0.800 | 0.400 |" in md  # B's train/val merged with D's test
    assert "**Verdict:** A shifted feature." in md
    assert "**drop it**, with test accuracy 0.700 against 0.400 without it (+30.0 points)." in md
    assert "| Part C: input gradients and feature attribution | not run |" in md
    assert "SYNTHETIC" not in md
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert list(out.rglob("*.tmp")) == []
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("report: ")


def test_failing_part_is_isolated(tmp_path, stub_parts, capsys):
    data, out = write_pair(tmp_path / "data"), tmp_path / "out"
    rc = run_all.main(["--data-dir", str(data), "--target", "label", "--out", str(out),
                       "--seed", "13", "--course"])           # the course's parts: Question 2 too
    assert rc == 1
    assert stub_parts == ["A", "B", "Q2"]  # C and D need B: skipped, not run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["partB"]["error"] == "RuntimeError: boom in B"
    assert metrics["partB"]["partial"]["value"] == 0.5
    assert metrics["partC"]["error"].startswith("skipped") and "B" in metrics["partC"]["error"]
    assert metrics["q2"]["value"] == 0.5 and "error" not in metrics["q2"]
    log = (out / "logs" / "partB.log").read_text()
    assert "Traceback" in log and "boom in B" in log
    md = (out / "report.md").read_text()
    assert "failed: RuntimeError: boom in B" in md
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "Traceback" not in printed
    lines = printed.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("run finished in ")]
    assert len(at) == 1 and lines[at[0]].endswith(": part A, Q2 done")
    assert lines[at[0] + 1] == (f"part B failed (traceback: {out / 'logs' / 'partB.log'}); "
                                "part C, D skipped (needs part B)")


def test_synthetic_run_is_announced(tmp_path, stub_parts, capsys, monkeypatch):
    import prep
    real = prep.load_data

    def synthetic_only(data_dir=None, **kw):
        ds = real(data_dir, **kw)
        ds.synthetic, ds.source = True, "synthetic"
        return ds
    monkeypatch.setattr(prep, "load_data", synthetic_only)
    data, out = write_pair(tmp_path / "data"), tmp_path / "out"
    assert run_all.main(["--data-dir", str(data), "--target", "label", "--out", str(out),
                         "--parts", "A"]) == 0
    assert "SYNTHETIC DATA" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert md.index("SYNTHETIC DATA") < md.index("## Summary")
    assert "SYNTHETIC DATA" in (out / "report.html").read_text()


def test_summary_with_nothing_run():
    ctx = context.Context(cfg=parse(), dataset=None, data={}, out=Path("."),
                          report=run_all.rp.Report("x"))
    md = run_all.summary(ctx).to_markdown()
    assert "Accuracy: not run." in md
    assert "**Verdict:** Part D did not run, so there is no diagnosis." in md
    assert "**Mitigation:** Part D did not run, so no mitigation was measured." in md
    # every part a run may have, not the course's own question on data that is not the course's
    assert md.count("| not run |") == len([p for p in run_all.PARTS.values() if p.default])
    ctx.course = True
    assert run_all.summary(ctx).to_markdown().count("| not run |") == len(run_all.PARTS)


def test_jsonable():
    out = run_all.jsonable({"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"),
                            "d": (1, Path("x")), 3: np.bool_(True)})
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, "x"], "3": True}
    json.dumps(out, allow_nan=False)
