"""How right ``performance.py`` is on generated cases it was not developed on, and how fast.

    python bench/performance_check.py [--seeds 100 120] [--model logistic mlp] [--n 10000]
                                      [--n-refit 3] [--timing] [--out out/bench/performance]
                                      [--mechanisms none covariate ...] [--skip-decomposition]
    python bench/performance_check.py --diagnose-rows 50000 200000 1000000
    python bench/performance_check.py --weighting --seeds 200 212

For each seed (development used seeds 0-2; the defaults start at 100) and model,
``performance.make_case`` draws a world and plants each mechanism in test (train
and validation are the same for every mechanism of a seed, so one model serves
them all). The models: ``logistic`` (scikit-learn's, its logits doubled: an
overconfident model) and ``mlp`` (the project's network, ``mlp.MLP``, 300
full-batch iterations). Per case:

- A: ``estimate_accuracy`` in four variants (plain; EM's class shares; weighted
  by the density ratio; ``priors_test="auto"`` choosing between the last two)
  against the accuracy the held-back labels show: error, and whether the
  interval covers it.
- B: ``decompose_predictions`` (log loss and accuracy, the same ratio): each
  term with its interval, the share of the total in the planted term, and
  whether each term whose true value is zero has an interval covering zero.

Every summary figure comes with a 95% interval over seeds (t for means, Wilson
for proportions): each seed redraws the world, the rows, the shift and the
model, so the interval carries every source of randomness. ``--timing`` times
each function on 40,000 validation and 40,000 test rows of 12 features
(median of 3, one thread; wall and CPU seconds, since the machine may be
running other work).

``--n-refit`` sets the density ratio's refits (default 3, as Part D calls it:
``part_d.RATIO_OPTIONS``). ``--diagnose-rows N ...`` instead times
``shift.diagnose`` (its proxy model, one thread for OpenMP) on generated
training files of N rows and test files of N/2 (``bench/shift_cases.py``, a
covariate shift, seed 3): the cost behind ``part_d.SAMPLE_ROWS``.

Writes ``accuracy.csv`` and ``decomposition.csv`` (one row per case, written as
it goes), ``summary.md`` (the tables) and ``summary.json`` into ``--out``.

Held-out figures, before and after ``performance.RATIO_ATTENUATION`` (the density ratio's
measured under-correction, carried by the estimate and its interval; measured on development
seeds 0-9), on seeds 300-329, which no one looked at while developing it; both models,
10,000 + 10,000 rows, 3 refits, the ``ratio+auto`` variant that Part D calls::

    python bench/performance_check.py --seeds 300 330 --mechanisms none covariate prior --skip-decomposition
    python bench/performance_check.py --seeds 300 320 --mechanisms conditional unseen --skip-decomposition

("before": the same commands in a work tree of 14710af with this script copied in.) Covariate,
60 cases: 1.1 points off on average (at most 2.9), within 3 points in 60 of 60 (100%, Wilson
95% 94-100%), the 95% interval covering the labels' accuracy in 55 of 60 (92%, 82-96%; mean
width 5.5 points); before, 2.2 points (at most 4.5), 41 of 60 (68%, 56-79%) and 23 of 60
(38%, 27-51%; width 3.8). By model after: logistic 1.2 points (bias -0.1), covering 27 of 30;
MLP 1.0 (bias +0.5), 28 of 30; before, +1.8 and +2.4 points of bias, 15 and 8 of 30. No shift
and prior shift are unchanged to the digit (``auto`` used EM's class shares in each of those
120 cases, so nothing is weighted): 60 of 60 and 59 of 60 within 3 points, intervals covering
in 56 of 60 each. Conditional and unseen (40 cases each, seeds 300-319): 20.4 points off on
average before and after, and 22.6 before and 23.0 after (the band follows the weighted
change, upwards there); none within 3 points: no estimate without labels sees them. The
band was measured on this generator's covariate shift (more inputs near the boundary); another
kind of covariate shift may leave the ratio a different under-correction.

``--diagnose-rows 50000 200000 1000000``:
2.4 s, 31 s and 156 s (train 50k/200k/1M rows, test half that; one core).
``--weighting --seeds 200 212`` (``run_weighting``: Part D's importance-weighting
row on covariate cases, the default network): test accuracy changed by -0.7 points
on average (95% t interval -1.3 to -0.1), higher in 4 of 12 seeds; validation
accuracy was higher with the weights in 3 of 12. The network is flexible enough
that the moved inputs cost accuracy because they are harder, not because the fit
was aimed at train's inputs, which is what weighting corrects.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np    # noqa: E402
import pandas as pd   # noqa: E402
from scipy import stats   # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import performance as pf   # noqa: E402

VARIANTS = {            # name -> (use the density ratio, priors_test)
    "plain": (False, None),
    "em": (False, "em"),
    "ratio": (True, None),
    "ratio+auto": (True, "auto"),
}
TERMS = ("covariate", "conditional", "unseen")
PLANTED = {"none": None, "covariate": "covariate", "conditional": "conditional",
           "unseen": "unseen", "prior": None}


def _fit_model(kind, case, seed):
    """The model's probabilities on validation and a function giving them on any X."""
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        m = LogisticRegression(max_iter=500).fit(case.X_train, case.y_train)
        return lambda X: pf._softmax(2.0 * np.log(np.clip(m.predict_proba(X), 1e-12, 1.0)))
    if kind == "mlp":
        from mlp import MLP
        m = MLP(n_iter=300, lr=0.1, seed=seed).fit(case.X_train, case.y_train)
        return m.predict_proba
    raise ValueError(f"--model must be logistic or mlp, got {kind!r}")


def _append(path, row):
    pd.DataFrame([row]).to_csv(path, mode="a", header=not os.path.exists(path), index=False)


def run_cases(args):
    acc_path = os.path.join(args.out, "accuracy.csv")
    dec_path = os.path.join(args.out, "decomposition.csv")
    for p in (acc_path, dec_path):
        if os.path.exists(p):
            os.remove(p)
    for model in args.model:
        for seed in range(*args.seeds):
            cases = {m: pf.make_case(m, seed, n_train=args.n_train, n_val=args.n, n_test=args.n)
                     for m in args.mechanisms}
            t = time.perf_counter()
            proba = _fit_model(model, next(iter(cases.values())), seed)   # train: the same in every case
            fit_s = time.perf_counter() - t
            P_val = proba(next(iter(cases.values())).X_val)   # validation: the same in every case
            for mech, c in cases.items():
                P_test = proba(c.X_test)
                truth = float(np.mean(P_test.argmax(axis=1) == c.y_test))
                t = time.perf_counter()
                ratio = pf.fit_density_ratio(c.X_val, c.X_test, P_val=P_val, P_test=P_test,
                                             seed=seed, n_refit=args.n_refit)
                ratio_s = time.perf_counter() - t
                for name, (use_ratio, priors) in VARIANTS.items():
                    t = time.perf_counter()
                    e = pf.estimate_accuracy(P_val, c.y_val, P_test, priors_test=priors,
                                             ratio=ratio if use_ratio else None, seed=seed,
                                             n_boot=args.n_boot)
                    _append(acc_path, dict(
                        model=model, seed=seed, mechanism=mech, variant=name, truth=truth,
                        estimate=e.estimate, low=e.low, high=e.high, error=e.estimate - truth,
                        covered=e.low <= truth <= e.high, calibration=e.calibration,
                        validation=e.validation_accuracy, uncalibrated=e.uncalibrated,
                        priors_source=e.priors_source, label_shift_gap=e.label_shift_gap,
                        unseen_share=e.unseen_share, seconds=time.perf_counter() - t))
                if args.skip_decomposition:
                    print(f"{model} seed {seed} {mech:11s} acc {truth:.3f} ratio {ratio_s:.1f}s",
                          flush=True)
                    continue
                t = time.perf_counter()
                r = pf.decompose_predictions(c.X_val, c.y_val, P_val, c.X_test, c.y_test, P_test,
                                             ratio=ratio, seed=seed, n_boot=args.n_boot)
                dec_s = time.perf_counter() - t
                for d in (r.accuracy, r.log_loss):
                    row = dict(model=model, seed=seed, mechanism=mech, metric=d.metric,
                               validation=d.validation, test=d.test, auc=d.domain_auc,
                               unseen_share=d.unseen_share.value,
                               planted_unseen_share=float(c.unseen.mean()),
                               ratio_seconds=ratio_s, decompose_seconds=dec_s,
                               model_seconds=fit_s)
                    for term in ("total",) + TERMS:
                        e = getattr(d, term)
                        row.update({term: e.value, f"{term}_low": e.low, f"{term}_high": e.high})
                    row["sentence"] = d.sentence()
                    _append(dec_path, row)
                print(f"{model} seed {seed} {mech:11s} acc {truth:.3f} "
                      f"ratio {ratio_s:.1f}s decompose {dec_s:.1f}s", flush=True)
    return (pd.read_csv(acc_path),
            pd.read_csv(dec_path) if os.path.exists(dec_path) else pd.DataFrame())


# -- summaries -----------------------------------------------------------------

def _mean_ci(x):
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def _wilson(k, n):
    """(share, low, high): k / n and its Wilson 95% interval (scipy.stats.binomtest)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def _fmt(m, lo, hi, pct=False):
    if pct:
        return f"{100 * m:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def summarise_accuracy(acc):
    rows = []
    for (model, mech, var), g in acc.groupby(["model", "mechanism", "variant"], sort=False):
        err = g["error"].to_numpy()
        rows.append(dict(
            model=model, mechanism=mech, variant=var, seeds=len(g),
            mean_abs_error=_mean_ci(np.abs(err)), bias=_mean_ci(err),
            max_abs_error=float(np.abs(err).max()),
            within_3_points=_wilson(int((np.abs(err) <= 0.03).sum()), len(g)),
            coverage=_wilson(int(g["covered"].sum()), len(g)),
            width=_mean_ci(g["high"] - g["low"]), truth=_mean_ci(g["truth"]),
            em_used=_wilson(int((g["priors_source"] == "em").sum()), len(g)),
            validation=_mean_ci(g["validation"])))
    return rows


def summarise_decomposition(dec):
    rows = []
    if dec.empty:
        return rows
    for (model, mech, metric), g in dec.groupby(["model", "mechanism", "metric"], sort=False):
        planted = PLANTED[mech]
        row = dict(model=model, mechanism=mech, metric=metric, seeds=len(g),
                   total=_mean_ci(g["total"]), auc=_mean_ci(g["auc"]),
                   unseen_share=_mean_ci(g["unseen_share"]))
        for term in TERMS:
            row[term] = _mean_ci(g[term])
            if term == planted:
                row["planted_share"] = _mean_ci(g[term] / g["total"])
                row["planted_excludes_zero"] = _wilson(
                    int(((g[f"{term}_low"] > 0) | (g[f"{term}_high"] < 0)).sum()), len(g))
        zero_terms = [t for t in TERMS if t != planted and mech != "prior"]
        if zero_terms:
            covered = np.ones(len(g), dtype=bool)
            for term in zero_terms:
                covered &= (g[f"{term}_low"] <= 0).to_numpy() & (g[f"{term}_high"] >= 0).to_numpy()
            row["zero_terms"] = "+".join(zero_terms)
            row["zero_terms_cover_zero"] = _wilson(int(covered.sum()), len(g))
            row["each_zero_term_covers_zero"] = _wilson(
                sum(int(((g[f"{t}_low"] <= 0) & (g[f"{t}_high"] >= 0)).sum()) for t in zero_terms),
                len(g) * len(zero_terms))
        rows.append(row)
    return rows


def _tables(acc_rows, dec_rows, args):
    lines = [f"# performance.py on held-out seeds {args.seeds[0]}-{args.seeds[1] - 1}", "",
             f"{args.n} validation and {args.n} test rows, {args.n_train} training rows, 12 "
             f"features, 3 classes; {args.n_boot} bootstrap replicates. Means with 95% t "
             f"intervals over seeds, proportions with 95% Wilson intervals.", "",
             "## A. Accuracy without test labels (estimate - accuracy the labels show)", "",
             "| model | mechanism | variant | mean abs error | bias | max abs error | within 3 "
             "points | interval covers | mean width | EM's shares used |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in acc_rows:
        lines.append(f"| {r['model']} | {r['mechanism']} | {r['variant']} | "
                     f"{_fmt(*r['mean_abs_error'])} | {_fmt(*r['bias'])} | "
                     f"{r['max_abs_error']:.3f} | {_fmt(*r['within_3_points'], pct=True)} | "
                     f"{_fmt(*r['coverage'], pct=True)} | {r['width'][0]:.3f} | "
                     f"{_fmt(*r['em_used'], pct=True)} |")
    lines += ["", "Within 3 points, mechanisms pooled (what Part D calls, `ratio+auto`): all of them, "
              "and those an estimate without labels can answer (none, covariate, prior; not a "
              "changed P(label | inputs) nor inputs train never showed):", ""]
    for r in _pooled_within(acc_rows):
        lines.append(f"- {r}")
    if not dec_rows:
        return lines
    lines += ["", "## B. Decomposition of the validation -> test change", "",
              "| model | mechanism | metric | total | covariate | conditional | unseen | planted "
              "term's share | planted term's interval excludes 0 | zero terms' intervals cover 0 "
              "(all / each) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in dec_rows:
        share = _fmt(*r["planted_share"], pct=True) if "planted_share" in r else "-"
        excl = _fmt(*r["planted_excludes_zero"], pct=True) if "planted_excludes_zero" in r else "-"
        cover = (f"{r['zero_terms']}: {_fmt(*r['zero_terms_cover_zero'], pct=True)} / "
                 f"{_fmt(*r['each_zero_term_covers_zero'], pct=True)}"
                 if "zero_terms" in r else "-")
        lines.append(f"| {r['model']} | {r['mechanism']} | {r['metric']} | {_fmt(*r['total'])} | "
                     f"{_fmt(*r['covariate'])} | {_fmt(*r['conditional'])} | "
                     f"{_fmt(*r['unseen'])} | {share} | {excl} | {cover} |")
    return lines


def _pooled_within(acc_rows):
    """'within 3 points' of the ``ratio+auto`` variant pooled over mechanisms, per model."""
    out = []
    for model in dict.fromkeys(r["model"] for r in acc_rows):
        rows = [r for r in acc_rows if r["model"] == model and r["variant"] == "ratio+auto"]
        for label, keep in (("all mechanisms", rows),
                            ("none, covariate, prior", [r for r in rows if r["mechanism"] in
                                                        ("none", "covariate", "prior")])):
            n = sum(r["seeds"] for r in keep)
            k = sum(round(r["within_3_points"][0] * r["seeds"]) for r in keep)
            out.append(f"{model}, {label}: {k} of {n} cases, {_fmt(*_wilson(k, n), pct=True)}")
    return out


def write_summary(acc_rows, dec_rows, timing, args):
    lines = _tables(acc_rows, dec_rows, args) if acc_rows else ["# performance.py: runtime"]
    if timing:
        lines += ["", "## Runtime on 40,000 + 40,000 rows (median of 3, seconds; one thread)", "",
                  "| call | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in timing.items()]
    path = os.path.join(args.out, "summary.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(dict(args=vars(args), accuracy=acc_rows, decomposition=dec_rows,
                       timing=timing), f, indent=1, default=float)
    print("\n".join(lines))


def run_timing(n=40_000, repeats=3):
    from sklearn.linear_model import LogisticRegression
    c = pf.make_case("covariate", 7, n_train=20_000, n_val=n, n_test=n)
    m = LogisticRegression(max_iter=500).fit(c.X_train, c.y_train)
    Pv, Pt = m.predict_proba(c.X_val), m.predict_proba(c.X_test)
    ratio = pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv, P_test=Pt)
    calls = {
        "fit_density_ratio (with P)": lambda: pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv,
                                                                   P_test=Pt),
        "estimate_accuracy (plain)": lambda: pf.estimate_accuracy(Pv, c.y_val, Pt),
        "estimate_accuracy (ratio, priors auto)": lambda: pf.estimate_accuracy(
            Pv, c.y_val, Pt, ratio=ratio, priors_test="auto"),
        "decompose_predictions (given ratio)": lambda: pf.decompose_predictions(
            c.X_val, c.y_val, Pv, c.X_test, c.y_test, Pt, ratio=ratio),
        "decompose_predictions (fits its ratio)": lambda: pf.decompose_predictions(
            c.X_val, c.y_val, Pv, c.X_test, c.y_test, Pt),
    }
    out = {}
    for name, call in calls.items():
        wall, cpu = [], []
        for _ in range(repeats):
            t, c0 = time.perf_counter(), time.process_time()
            call()
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c0)
        out[f"{name}, wall"] = float(np.median(wall))
        out[f"{name}, CPU"] = float(np.median(cpu))
        print(f"{name}: {np.median(wall):.2f} s wall, {np.median(cpu):.2f} s CPU", flush=True)
    try:
        out["load average (1 min) at the end"] = os.getloadavg()[0]
    except OSError:
        pass
    return out


def run_diagnose_rows(sizes, out):
    """Seconds of ``shift.diagnose`` on generated files of each size (train n, test n/2)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import shift
    import shift_cases
    rows = []
    for n in sizes:
        c = shift_cases.make("covariate_shift", 3, size=(n, n // 2))
        t, c0 = time.perf_counter(), time.process_time()
        d = shift.diagnose(c.train, c.test, c.target, c.numeric, c.categorical, seed=0)
        rows.append(dict(train_rows=len(c.train), test_rows=len(c.test),
                         features=len(c.numeric) + len(c.categorical),
                         wall_seconds=time.perf_counter() - t, cpu_seconds=time.process_time() - c0,
                         verdict=d.verdict.kind))
        print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(os.path.join(out, "diagnose_rows.csv"), index=False)
    return rows


def run_weighting(seeds, out):
    """Part D's importance-weighting row on ``make_case("covariate", seed)`` (10,000 training,
    3,000 validation, 5,000 test rows): the network Part D trains by default (64, 64 relu,
    lr 0.1, 200 iterations) without and with ``mitigations.importance_weights``; test and
    validation accuracy of each, and the weights' effective size."""
    import mitigations
    from mlp import MLP
    rows = []
    for seed in range(*seeds):
        c = pf.make_case("covariate", seed, n_train=10_000, n_val=3_000, n_test=5_000)
        kw = dict(hidden=(64, 64), activation="relu", lr=0.1, n_iter=200, seed=42, dtype="float32")
        base = MLP(**kw).fit(c.X_train, c.y_train)
        w = mitigations.importance_weights(c.X_train, c.X_test, seed=42)
        iw = MLP(**kw).fit(c.X_train, c.y_train, sample_weight=w.weights)
        acc = lambda m, X, y: float(np.mean(m.predict(X) == y))  # noqa: E731
        rows.append(dict(seed=seed, test=acc(base, c.X_test, c.y_test), test_weighted=acc(iw, c.X_test, c.y_test),
                         val=acc(base, c.X_val, c.y_val), val_weighted=acc(iw, c.X_val, c.y_val),
                         effective_rows=w.effective_rows, capped=w.clipped_share, auc=w.auc))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(out, "weighting.csv"), index=False)
    gain = df["test_weighted"] - df["test"]
    m, lo, hi = _mean_ci(gain)
    print(f"test-accuracy gain of importance weighting: mean {_fmt(m, lo, hi)}; higher in "
          f"{int((gain > 0).sum())} of {len(gain)} seeds; validation chooses it in "
          f"{int((df['val_weighted'] > df['val']).sum())}")
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs=2, default=(100, 120), metavar=("FIRST", "STOP"))
    ap.add_argument("--model", nargs="+", default=["logistic", "mlp"])
    ap.add_argument("--n", type=int, default=10_000, help="validation and test rows")
    ap.add_argument("--n-train", type=int, default=20_000)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--timing", action="store_true", help="also time each call on 40k rows")
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--n-refit", type=int, default=3, help="the density ratio's refits (Part D: 3)")
    ap.add_argument("--mechanisms", nargs="+", default=list(pf.MECHANISMS), choices=pf.MECHANISMS,
                    help="the planted mechanisms to draw (default: all)")
    ap.add_argument("--skip-decomposition", action="store_true",
                    help="only the accuracy estimate (part A of the summary)")
    ap.add_argument("--weighting", action="store_true",
                    help="only measure Part D's importance-weighting row on covariate cases of --seeds")
    ap.add_argument("--diagnose-rows", type=int, nargs="+", default=None, metavar="N",
                    help="only time shift.diagnose on generated files of N training rows (N/2 test)")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "bench", "performance"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.diagnose_rows:
        run_diagnose_rows(args.diagnose_rows, args.out)
        return
    if args.weighting:
        run_weighting(args.seeds, args.out)
        return
    timing = run_timing() if args.timing or args.timing_only else {}
    if args.timing_only:
        write_summary([], [], timing, args)
        return
    acc, dec = run_cases(args)
    write_summary(summarise_accuracy(acc), summarise_decomposition(dec), timing, args)


if __name__ == "__main__":
    main()
