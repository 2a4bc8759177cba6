"""Part results without rendering, their rules, their renderers, and the schedule's
plumbing (``Step``, ``Schedule``, ``Jobs.after``).

One small synthetic run (``prep.make_synthetic`` with a planted train-only
shortcut, few iterations, everything in-process) computes every part once for
the module; the tests assert on the frozen result objects, then render them
into a temporary folder and check the files.
"""
import dataclasses
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import jobs
import prep
import report as rp
import context
import mitigations
import part_a
import part_b
import part_c
import part_d
import part_q2
import run_all
from conftest import stub_part
import shift

SHORTCUT = "open_days"
RENAME = {"amenity_score": "comfort", "availability_365": "open_days", "room_type": "kind"}
PARTS = ("A", "B", "C", "D", "Q2")


def _context(out, *args):
    cfg = run_all.validate(run_all.build_parser().parse_args(
        ["--quick", "--iterations", "40", "--lr", "0.5", "--hidden", "16,12", "--threads", "1",
         "--target", "label", "--out", str(out), *args]))
    train, test = prep.make_synthetic(n_train=1500, n_test=500, shortcut=SHORTCUT, seed=5,
                                      columns=RENAME, target="label")
    ds = prep.validate_frames(train, test, target="label")
    data = prep.encode(ds, val_size=cfg.val_size, seed=cfg.seed)
    return context.Context(cfg=cfg, dataset=ds, data=data, out=Path(out), report=rp.Report("body"),
                           jobs=jobs.Jobs(0), parts=PARTS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Every part computed (not rendered) on the synthetic pair: the context, with
    ``ctx.results`` filled and ``ctx.plan`` the schedule that fed them."""
    ctx = _context(tmp_path_factory.mktemp("results"))
    ctx.plan = run_all.schedule(ctx)
    for code in PARTS:
        for step in ctx.plan.steps_before(code):
            step.run()
        ctx.results[code] = run_all.PARTS[code].impl.compute(ctx)
    return ctx


# ------------------------------------------------------------------ results
def test_results_are_frozen_and_typed(run):
    kinds = {"A": part_a.AResult, "B": part_b.BResult, "C": part_c.CResult, "D": part_d.DResult,
             "Q2": part_q2.Q2Result}
    for code, kind in kinds.items():
        res = run.results[code]
        assert type(res) is kind
        with pytest.raises(dataclasses.FrozenInstanceError):
            res.headline_cache = 1
    assert list(run.out.iterdir()) == []            # computing wrote nothing
    assert run.report.blocks == []                  # ... and added nothing to the report


def test_part_a_finds_the_planted_shortcut_first(run):
    a = run.results["A"]
    assert a.top[0] == SHORTCUT
    assert list(a.predictive_power.index[:3]) == a.top
    assert a.dominance["feature"] == SHORTCUT
    assert a.dominance["ratio"] == part_a.DOMINANCE.threshold
    assert a.dominance["min_pps"] == part_a.DOMINANCE.value("min_pps")
    assert a.n_train == 1500 and a.n_test == 500
    assert a.n_missing_test == 0 and a.n_missing_train > 0     # make_synthetic: missing in train only


def test_part_b_has_per_layer_gradient_arrays(run):
    b, cfg = run.results["B"], run.cfg
    assert set(b.networks) == set(cfg.activations) == set(b.gradients)
    for act, g in b.gradients.items():
        assert g.shape == (cfg.iterations, len(cfg.hidden) + 1)      # per iteration, per weight layer
        assert np.all(np.isfinite(g)) and np.all(g > 0)
        np.testing.assert_array_equal(g, b.networks[act].history_["grad_abs_mean"])
        assert len(b.gradient_tables[act]) == 20                     # first and last 10 iterations
    vals = {row["activation"]: row["val_acc"] for row in b.final}
    assert b.best == max(vals, key=vals.get)
    expect_stuck = [a for a, v in vals.items() if abs(v - b.baseline["val"]) < part_b.STUCK.threshold]
    assert b.stuck == expect_stuck
    assert [r["init"] for r in b.sigmoid_setup] == ["normal", "glorot", "glorot"]
    assert b.sigmoid_verdict == part_b._sigmoid_verdict(b.sigmoid_setup)
    assert set(b.depth_ratios) == set(cfg.activations)
    assert all(len(v) == len(b.depths) for v in b.depth_ratios.values())


def test_part_c_reuses_the_scheduled_checks_of_the_best_network(run):
    b, c = run.results["B"], run.results["C"]
    checks = run.plan.checks.result()
    assert c.attribution[b.best]["output"] is checks["sensitivity"]      # computed once, in the step
    for act in b.networks:
        ranked = c.attribution[act]["output"]["by_source"]
        assert sorted(ranked["feature"]) == sorted(run.dataset.features)
        assert {"spearman_perm_train", "spearman_randomised", "spearman_vs_partA"} <= set(c.checks[act])
    assert c.dominant == SHORTCUT


def test_part_d_names_the_planted_shortcut_and_measures_its_removal(run):
    d = run.results["D"]
    assert d.network == run.results["B"].best
    assert d.suspects == [SHORTCUT]
    assert [(s.feature, s.kind) for s in d.diagnosis.result.suspects] == [(SHORTCUT, "relationship_broken")]
    names = [m["name"] for m in d.mitigations]
    assert names[:2] == ["baseline", f"remove {SHORTCUT}"]
    assert d.mitigations[1]["answers"] == ["relationship_broken"]
    assert {m.row_name() for m in mitigations.MITIGATIONS if not m.answers} <= set(names)
    assert d.mitigations[1]["test_acc"] > d.mitigations[0]["test_acc"]
    assert d.by_val == max(range(len(names)), key=lambda i: d.mitigations[i]["val_acc"])
    assert not hasattr(d, "best")                   # nothing is picked on test
    # validation cannot see the shortcut: it prefers a network that keeps it; the recommendation
    # stays the validation winner and the removal is reported as the diagnosis's fix
    assert d.mitigations[d.by_val]["val_acc"] > d.mitigations[1]["val_acc"]
    assert (d.recommended, d.reason, d.fix) == (d.by_val, "validation", 1)
    gain, lo, hi = (d.mitigations[1][k] for k in ("gain", "gain_lo", "gain_hi"))
    assert gain == pytest.approx(d.mitigations[1]["test_acc"] - d.mitigations[0]["test_acc"])
    assert lo < gain < hi and d.root_cause == (lo > 0)
    sentences = d.summary_sentences
    assert 1 <= len(sentences) <= 2 and f"`{SHORTCUT}`" in sentences[0] and "relationship_broken" in sentences[0]
    assert "falls" in sentences[1]            # validation accuracy is above test accuracy here
    base = d.mitigations[0]["test_acc"]
    assert d.touches_cause == [abs(m["test_acc"] - base) * 100 >= part_d.TOUCHES_CAUSE.threshold
                               for m in d.mitigations]
    assert d.confusion.sum() == 500


def test_q2_result_has_a_table_per_task(run):
    q = run.results["Q2"]
    assert set(q.findings) == set(q.tables) == {"data", "synthetic"}
    for task, t in q.tables.items():
        assert list(t["lr"]) == sorted(q.lrs)
        assert set(q.findings[task]) == {"slower", "faster", "less_stable", "more_stable"}
    assert q.answer in ("yes", "no")


def test_metrics_are_the_serialised_results(run):
    m = {code: run.results[code].to_metrics() for code in PARTS}
    json.dumps(run_all.jsonable(m), allow_nan=False)
    assert m["D"]["suspect_features"] == [SHORTCUT]
    assert m["D"]["verdict"] == run.results["D"].diagnosis.result.to_dict()["verdict"]
    assert m["D"]["verdict"]["suspects"][0]["kind"] == "relationship_broken"
    assert m["D"]["summary"] == run.results["D"].summary_sentences
    assert m["D"]["diagnosis_seconds"] == run.results["D"].diagnosis.seconds > 0
    assert m["B"]["gradients"][run.results["B"].best]["mean_abs_dW"] == \
        run.results["B"].gradients[run.results["B"].best].tolist()
    assert m["Q2"]["answer"] == run.results["Q2"].answer
    for code in PARTS:
        assert m[code]["headline"] == run.results[code].headline


def test_summary_reads_the_results(run):
    ctx = dataclasses.replace(run, metrics={"partD": {}})
    md = run_all.summary(ctx).to_markdown()
    d = run.results["D"]
    verdict = next(ln for ln in md.splitlines() if ln.startswith("**Verdict:** "))
    # quoted as they are (the glossary only spells out a term at its first use)
    assert verdict.replace("CI (confidence interval)", "CI") == "**Verdict:** " + " ".join(d.summary_sentences)
    chosen = d.mitigations[d.recommended]     # the validation winner
    fix = d.mitigations[d.fix]                # the diagnosis's fix, reported beside it
    mitigation = next(ln for ln in md.splitlines() if ln.startswith("**Mitigation:** "))
    assert f"**{chosen['name']}**" in mitigation and f"{chosen['test_acc']:.3f}" in mitigation
    assert f"**{fix['name']}**" in mitigation and f"{fix['test_acc']:.3f}" in mitigation
    for act in run.cfg.activations:
        assert f"| {act} |" in md


# -------------------------------------------------------------------- rules
def test_rule_descriptions_state_their_thresholds():
    assert "0.5 points" in part_b.STUCK.description and part_b.STUCK.threshold == 0.005
    assert "1 point" in part_b.SIGMOID_LIFT.description and part_b.SIGMOID_LIFT.threshold == 0.01
    assert "2 points" in part_d.TOUCHES_CAUSE.description
    assert "2×" in part_a.DOMINANCE.description and "0.3" in part_a.DOMINANCE.description
    assert "20%" in part_q2.Q2_SPEED.description and part_q2.Q2_SPEED.threshold == 0.2
    assert "0.2" in part_q2.Q2_STABILITY.description
    assert "+0.2" in part_q2.Q2_COSINE.description and "-0.2" in part_q2.Q2_COSINE.description
    assert "1%" in part_d.STILL_LEARNING.description


@pytest.mark.parametrize("lifts, verdict", [((0.0, 0.05), "step_size"), ((0.02, 0.05), "init"),
                                            ((0.005, 0.008), "activation"), ((-0.1, 0.02), "step_size")])
def test_sigmoid_verdict_applies_its_rule(lifts, verdict):
    rows = [{"val_acc": 0.5}] + [{"val_acc": 0.5 + x} for x in lifts]
    assert part_b._sigmoid_verdict(rows) == verdict


def test_q2_verdict_applies_its_rules():
    def s(model, lr, iters, div):
        return {"model": model, "lr": lr, "iters_to_threshold_median": iters, "diverged_frac": div,
                "final_loss_mean": 1.0, "final_acc_mean": 0.5, "mean_cos_paths": 0.0,
                "mean_norm_output_path": 1.0, "mean_norm_hidden_path": 1.0}
    summary = [s("shared", 0.1, 130, 0.0), s("independent", 0.1, 100, 0.0),     # 30% slower
               s("shared", 1.0, 110, 0.4), s("independent", 1.0, 100, 0.0),     # 10%: same speed
               s("shared", 3.0, 50, 0.0), s("independent", 3.0, 100, 0.2)]      # faster, 0.2 less divergence
    rows, found = part_q2._q2_verdict(summary)
    assert found == {"slower": [0.1], "faster": [3.0], "less_stable": [1.0], "more_stable": [3.0]}
    assert [r["lr"] for r in rows] == [0.1, 1.0, 3.0]


# ---------------------------------------------------------------- rendering
EXPECTED = {
    "A": ["tables/a_structure.csv", "tables/a_predictive_power.csv", "figures/a_class_distribution.png",
          "figures/a_correlation.png"],
    "B": ["tables/b_accuracy.csv", "tables/b_gradient_summary.csv", "figures/b_gradient_magnitudes.png",
          "tables/b_sigmoid_setup.csv", "figures/b_depth_ratios.png"],
    "C": ["tables/c_comparison.csv", "figures/c_attribution_original.png"],
    "D": ["tables/d_mitigations.csv", "tables/d_evidence.csv", "tables/d_rules_fired.csv", "tables/d_rules.csv",
          f"figures/d_suspect_{SHORTCUT}.png"],
    "Q2": ["tables/q2_data.csv", "tables/q2_synthetic.csv", "figures/q2_data_loss.png"],
}


@pytest.mark.parametrize("code", PARTS)
def test_rendering_writes_the_expected_files(run, code, tmp_path):
    out = context.Output(tmp_path, rp.Report("t"))
    run_all.PARTS[code].impl.render(run.results[code], out)
    for f in EXPECTED[code]:
        assert (tmp_path / f).stat().st_size > 100, f
    md = out.report.to_markdown()
    if code == "B":
        assert part_b.SIGMOID_LIFT.description in md
    if code == "D":
        d = run.results["D"]
        assert part_d.TOUCHES_CAUSE.description in md and part_d.VALIDATION_BLIND.description in md
        for sentence in [rp.literal(s) for s in shift.explain(d.diagnosis.result)] + d.summary_sentences:
            assert sentence in md.replace("CI (confidence interval)", "CI"), sentence
        assert "| conditional_shift | open_days |" in md        # the table of rules that fired
        assert (tmp_path / "tables/d_mitigations.csv").read_text().count("\n") == \
            len(run.results["D"].mitigations) + 1


# ------------------------------------------------------------ step, schedule
def test_step_runs_once_and_keeps_its_error():
    calls = []
    ok = context.Step("ok", lambda x: calls.append(x) or x + 1, inputs=[part_d._done(1)], before="B")
    bad = context.Step("bad", lambda: 1 / 0)
    seen = []
    ok.add_done_callback(lambda s: seen.append(s.result()))
    assert not ok.done() and calls == []
    assert ok.result() == 2 and ok.result() == 2 and calls == [1] and seen == [2]
    bad.run()                                   # never raises here ...
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):  # ... but at every caller
            bad.result()
    plan = context.Schedule(b_fits={"relu": ok}, b_networks=ok, checks=bad,
                            d_diagnosis=context.Step("z", lambda: 0, before="B"))
    assert [s.name for s in plan.steps_before("B")] == ["ok", "z"]


def _declared(plan):
    """The attributes of a ``Schedule`` that were declared (not None)."""
    return {f.name for f in dataclasses.fields(plan) if getattr(plan, f.name) is not None}


def test_schedule_declares_only_what_the_parts_need(tmp_path):
    ctx = _context(tmp_path, "--parts", "A,Q2")
    ctx.parts = run_all.plan(ctx.cfg.parts)
    assert _declared(run_all.schedule(ctx)) == {"q2_runs"}
    ctx.parts = run_all.plan(("C",))
    assert _declared(run_all.schedule(ctx)) == {"b_fits", "b_sigmoid", "b_networks", "checks", "reference"}
    ctx.parts = run_all.plan(("D",))
    plan = run_all.schedule(ctx)
    assert [s.name for s in plan.steps_before("B")] == ["B.networks", "checks", "D.diagnosis",
                                                         "D.mitigations", "D.combination"]


def test_registry_is_the_one_table():
    assert list(run_all.PARTS) == ["A", "B", "C", "D", "Q2"]
    assert run_all.NEEDS == {"C": ("B",), "D": ("B",)}
    assert run_all.PART_ALIASES["B(A)"] == "B" and run_all.PART_ALIASES["QUESTION2"] == "Q2"
    assert run_all.parse_parts("question2,b(b)") == ("B", "Q2")


# ---------------------------------------------------------------- Jobs.after
def _add(a, b, c=0):
    return a + b + c


def _fail(message):
    raise ValueError(message)


def test_after_in_process_waits_for_its_inputs():
    pool = jobs.Jobs(0)
    calls = []
    first = pool.submit("x", lambda: calls.append("x") or 2)
    later = pool.after("y", [first], _add, 3, c=4)
    assert calls == []                          # nothing ran yet
    assert later.result() == 9 and calls == ["x"]
    assert pool.after("y", [first], _add, 100) is later


def test_after_in_a_worker_runs_when_a_main_process_step_finishes():
    start = "fork" if jobs.fork_is_safe() else "spawn"
    with jobs.Jobs(1, start_method=start) as pool:
        step = context.Step("s", lambda: 5)
        job = pool.after("sum", [pool.submit("a", _add, 1, 2), step], _add, c=10)
        bad = pool.after("bad", [pool.submit("f", _fail, "input boom")], _add, 1)
        assert not job.done()
        threading.Timer(0.2, step.run).start()
        assert job.result(timeout=120) == 18
        with pytest.raises(ValueError, match="input boom"):
            bad.result(timeout=120)
        assert os.getpid() != pool.submit("pid", os.getpid).result(timeout=120)


def test_a_failing_step_fails_the_part_that_uses_it_not_the_part_it_precedes(tmp_path, monkeypatch):
    class Res:
        accuracy, headline = {}, ""

        def to_metrics(self):
            return {"ok": 1}

    def compute_d(ctx):
        return ctx.plan.d_diagnosis.result()

    for code, compute in (("B", lambda ctx: Res()), ("D", compute_d)):
        stub_part(monkeypatch, code, compute, lambda res, out: None)
    ctx = context.Context(cfg=None, dataset=None, data={}, out=tmp_path, report=rp.Report("x"))
    ctx.plan = context.Schedule(d_diagnosis=context.Step("D.diagnosis", lambda: 1 / 0, before="B"))
    failed = run_all.run_parts(ctx, ("B", "D"), log=lambda *a, **k: None)
    assert failed == ["D"]
    assert ctx.metrics["partB"] == {"ok": 1}
    assert ctx.metrics["partD"]["error"].startswith("ZeroDivisionError")
    assert "ZeroDivisionError" in (tmp_path / "logs" / "partD.log").read_text()
