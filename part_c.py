"""Part C: input gradients and feature attribution.

``checks_step`` (a schedule step, shared with Part D's diagnosis) computes the
sensitivity of the best network (mean |do/dx| over correctly classified
training rows) and its permutation check; ``compute(ctx) -> CResult`` ranks the
features for every network and compares the rankings; ``render(result,
output)`` writes the rankings, figures and the report section (with the
derivation in ``docs/partC_derivation.md``).
"""
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import mlp
import plots
import prep
from context import REPO_DIR, PartResult, analysis_rows, show_table
from prose import plural_text
from training import best_network
import report as rp


def attribution_checks(data, cfg, act, model):
    """Sensitivity of ``model`` (mean |do_m/dx| over the correctly classified training
    samples, ``mlp.feature_attribution``) and its ``mlp.permutation_check`` on the
    training split and the test set: ``{"sensitivity": ..., "permutation": {split: ...},
    "seconds_sensitivity": ...}`` (the time of the sensitivity alone, for Part C's
    ``seconds_attribution``). Part C reports them; Part D's diagnosis uses the permutation importances."""
    names, source = list(data.feature_names), list(data.feature_source)
    t0 = time.perf_counter()
    sens = mlp.feature_attribution(model.weights_, model.biases_, data.X_train, data.y_train, act,
                                   target="output", samples="correct", feature_names=names,
                                   feature_source=source)
    seconds = time.perf_counter() - t0
    perm, rows = {}, {}
    for split in ("train", "test"):
        if data.y(split) is None:                               # test may be unlabelled
            continue
        X, y = data.X(split), data.y(split)
        keep = analysis_rows(len(y), cfg.seed)
        rows[split] = (len(keep), len(y))
        perm[split] = mlp.permutation_check(model, X[keep], y[keep], sens, names, source,
                                            n_repeats=cfg.study.repeats, seed=cfg.seed)
    return {"sensitivity": sens, "permutation": perm, "seconds_sensitivity": seconds,
            "permutation_rows": rows}


IG_ROWS = 2000      # integrated gradients: correctly classified training rows (a seeded sample above it)
IG_STEPS = 32       # Gauss-Legendre points along the path from the training mean


def integrated_ranking(model, data, act, seed, rows=IG_ROWS, n_steps=IG_STEPS):
    """Integrated gradients of the winning class's output ``o_m`` from the training mean
    to each correctly classified training row (``mlp.integrated_gradients``), mean
    |attribution| per original column: ``{"by_source": DataFrame (feature, score, share,
    rank), "n_samples", "n_steps", "max_delta", "mean_change"}`` (``max_delta``: the
    largest completeness error |sum A - (t(x) - t(b))| over the rows, ``mean_change`` the
    mean |t(x) - t(b)| it is set against)."""
    X, y = data.X_train, data.y_train
    correct = np.flatnonzero(model.predict(X) == y)
    if len(correct) > rows:
        correct = np.sort(np.random.default_rng(seed).choice(correct, rows, replace=False))
    ig = mlp.integrated_gradients(model.weights_, model.biases_, X[correct], y[correct], act,
                                  target="output", baseline=X.mean(axis=0), n_steps=n_steps)
    per = pd.Series(np.abs(ig.attributions).mean(axis=0), index=list(data.feature_names))
    by = per.groupby(list(data.feature_source), sort=False).sum()
    by_source = pd.DataFrame({"feature": by.index, "score": by.to_numpy()})
    by_source["share"] = by_source["score"] / max(by_source["score"].sum(), 1e-300)
    by_source = by_source.sort_values("score", ascending=False).reset_index(drop=True)
    by_source["rank"] = np.arange(1, len(by_source) + 1)
    return {"by_source": by_source, "n_samples": int(len(correct)), "n_steps": n_steps,
            "max_delta": float(np.max(np.abs(ig.delta))) if len(correct) else 0.0,
            "mean_change": float(np.mean(np.abs(ig.value - ig.baseline_value))) if len(correct) else 0.0}


def checks_step(ctx, networks):
    """Step ``checks``: ``attribution_checks`` of Part B's best network."""
    act = best_network({a: f.scores for a, f in networks.items()})
    return attribution_checks(ctx.data, ctx.cfg, act, networks[act].model)


@dataclass(frozen=True, eq=False)
class CResult(PartResult):
    """Part C: attribution rankings of each network of Part B, their cross-checks and the
    comparison with Part A's predictive power.

    ``attribution[act]`` holds ``"output"`` (mean |∂o_m/∂x|) and ``"logit"``
    (mean |∂a_m/∂x|) ``mlp.feature_attribution`` results; ``checks[act]`` the
    Spearman correlations with permutation importance and the randomisation check.
    """
    attribution: dict
    permutation_tables: dict    # activation -> DataFrame, train and test importance per column
    checks: dict
    comparison: Any             # DataFrame, one row per original column
    repeats: int
    pps: Any                    # Part A's predictive power (None when A did not run)
    dominant: Any               # Part A's dominant feature, or None
    dominant_agree: list        # networks whose top-ranked column is the dominant feature
    seconds_attribution: float
    integrated: dict            # activation -> integrated_ranking(...)

    @property
    def headline(self):
        return "; ".join(f"{act}: top {res['output']['by_source'].iloc[0]['feature']} "
                         f"({res['output']['by_source'].iloc[0]['share']:.0%})"
                         for act, res in self.attribution.items())

    def to_metrics(self):
        j = prep.to_jsonable
        return {"seconds_attribution": self.seconds_attribution,
                "rankings": {act: {"encoded": j(res["output"]["table"]),
                                   "original": j(res["output"]["by_source"]),
                                   "logit_original": j(res["logit"]["by_source"]),
                                   "n_samples": res["output"]["n_samples"]}
                             for act, res in self.attribution.items()},
                "integrated_gradients": {act: {"original": j(ig["by_source"]), "n_samples": ig["n_samples"],
                                               "n_steps": ig["n_steps"], "max_delta": ig["max_delta"],
                                               "mean_change": ig["mean_change"]}
                                         for act, ig in self.integrated.items()},
                "checks": self.checks, "comparison": j(self.comparison), "headline": self.headline}


def compute(ctx):
    """Part C's numbers for each network of Part B: sensitivity and logit attribution,
    permutation importance (train and test) and the weight-randomisation check (the best
    network's sensitivity and permutation come from the step ``checks``), compared with
    Part A's predictive power when A ran."""

    cfg, d = ctx.cfg, ctx.data
    b, a = ctx.results["B"], ctx.results.get("A")
    nets = b.networks
    names, source = list(d.feature_names), list(d.feature_source)
    checks_of = {b.best: ctx.plan.checks.result()}

    results, seconds = {}, 0.0      # seconds: sensitivity and logit attribution, not the permutation checks
    for act, model in nets.items():
        if act not in checks_of:
            checks_of[act] = attribution_checks(d, cfg, act, model)
        t0 = time.perf_counter()
        logit = mlp.feature_attribution(model.weights_, model.biases_, d.X_train, d.y_train, act,
                                        target="logit", samples="correct", feature_names=names,
                                        feature_source=source)
        seconds += time.perf_counter() - t0 + checks_of[act]["seconds_sensitivity"]
        results[act] = {"output": checks_of[act]["sensitivity"], "logit": logit}
    seconds = round(seconds, 3)
    integrated = {act: integrated_ranking(model, d, act, cfg.seed) for act, model in nets.items()}

    pp = a.predictive_power if a is not None else None
    side = pd.DataFrame({"feature": sorted(set(source), key=source.index)})
    for act, res in results.items():
        bs = res["output"]["by_source"].set_index("feature")
        side[f"{act} share"] = side["feature"].map(bs["share"])
        side[f"{act} rank"] = side["feature"].map(bs["rank"]).astype(int)
        lg = res["logit"]["by_source"].set_index("feature")
        side[f"{act} logit rank"] = side["feature"].map(lg["rank"]).astype(int)
        ig = integrated[act]["by_source"].set_index("feature")
        side[f"{act} IG rank"] = side["feature"].map(ig["rank"]).astype(int)
    if pp is not None:
        # a wide file's Part A scores only its strongest columns (eda.PP_MAX_FEATURES):
        # the others have no pps and no rank
        side["Part A pps"] = side["feature"].map(pp["pps"])
        side["Part A rank"] = side["Part A pps"].rank(ascending=False, method="min").astype("Int64")
    first = f"{next(iter(results))} rank"
    side = side.sort_values(first).reset_index(drop=True)

    checks, perm_tables = {}, {}
    for act, model in nets.items():
        pc_train = checks_of[act]["permutation"]["train"]
        pc_test = checks_of[act]["permutation"].get("test")       # None: test has no labels
        rnd = mlp.randomization_check(model.weights_, model.biases_, d.X_train, d.y_train, act,
                                      seed=cfg.seed)
        checks[act] = {"spearman_perm_train": pc_train["spearman_original"],
                       "spearman_perm_test": None if pc_test is None else pc_test["spearman_original"],
                       "spearman_perm_train_encoded": pc_train["spearman_encoded"],
                       "spearman_randomised": rnd["spearman"], "randomisation_passed": rnd["passed"],
                       "randomisation_threshold": rnd["threshold"],
                       "permutation_rows": {k: list(v) for k, v in
                                            checks_of[act].get("permutation_rows", {}).items()}}
        perm = pc_train["original"][["feature", "perm_mean", "perm_rank"]].rename(
            columns={"perm_mean": "perm. importance (train)", "perm_rank": "perm. rank (train)"})
        if pc_test is not None:
            perm_t = pc_test["original"][["feature", "perm_mean", "perm_rank"]].rename(
                columns={"perm_mean": "perm. importance (test)", "perm_rank": "perm. rank (test)"})
            perm = perm.merge(perm_t, on="feature")
        perm_tables[act] = table = perm
        checks[act]["permutation"] = prep.to_jsonable(table)
    if pp is not None:
        for act, res in results.items():
            bs = res["output"]["by_source"]
            scored = pp["pps"].dropna()
            common = [f for f in bs["feature"] if f in scored.index]
            rho = spearmanr(bs.set_index("feature").loc[common, "score"], scored.loc[common]).statistic \
                if len(common) > 2 else float("nan")
            checks[act]["spearman_vs_partA"] = float(rho)
    dom = a.dominance if a is not None else {}
    dominant = dom["feature"] if dom.get("dominant") else None
    agree = [act for act, res in results.items()
             if dominant is not None and res["output"]["by_source"].iloc[0]["feature"] == dominant]
    return CResult(attribution=results, permutation_tables=perm_tables, checks=checks, comparison=side,
                   repeats=cfg.study.repeats, pps=pp, dominant=dominant, dominant_agree=agree,
                   seconds_attribution=seconds, integrated=integrated)


def _agreement_with_part_a(pps, rho):
    """How a network's ranking agrees with Part A's predictive power ``pps`` (its table,
    NaN where a wide file's column was not scored), given their Spearman ``rho``."""
    scored = int(pps["pps"].notna().sum())
    if not np.isfinite(rho):
        why = ("fewer than three columns scored" if scored < 3 else
               "Part A's scores or the attribution are all equal: Spearman is undefined")
        return f"cannot be compared with Part A's ({why})"
    over = "" if scored == len(pps) else f" over the {scored:,} of {len(pps):,} columns Part A scored"
    return f"agrees with Part A's single-feature predictive power with Spearman {rho:+.2f}{over}"


def _integrated_lines(res):
    """Integrated gradients beside the sensitivity, per network: how they were taken, the
    completeness check, the rank agreement and the columns whose ranks differ."""
    lines = []
    for act, ig in res.integrated.items():
        sens = res.attribution[act]["output"]["by_source"].set_index("feature")["rank"]
        igr = ig["by_source"].set_index("feature")["rank"]
        common = [f for f in igr.index if f in sens.index]
        rho = spearmanr(sens.loc[common], igr.loc[common]).statistic if len(common) > 2 else float("nan")
        moved = [(f, int(sens[f]), int(igr[f])) for f in common if abs(int(sens[f]) - int(igr[f])) >= 2]
        text = (f"{rp.literal(act, code=True)}: integrated gradients (from the training mean to each of "
                f"{ig['n_samples']:,} correctly classified training rows, {ig['n_steps']} Gauss–Legendre steps; "
                f"completeness: the attributions of a row add up to o_m(x) − o_m(baseline) within "
                f"{ig['max_delta']:.2g}, against a mean change of {ig['mean_change']:.3f}) rank "
                f"{rp.literal(ig['by_source'].iloc[0]['feature'], code=True)} first")
        if rho == rho:
            text += f"; Spearman {rho:+.2f} with the sensitivity ranking"
        if moved:
            text += ("; ranks that differ by two or more: " + ", ".join(
                f"{rp.literal(f, code=True)} {a} → {b}" for f, a, b in moved[:6])
                + " (sensitivity → integrated gradients: a local slope against the whole path from the "
                  "average input)")
        else:
            text += "; no column's rank differs by two or more"
        lines.append(text + ".")
    return lines


def render(res, out):
    """Part C's derivation, tables (tables/c_*.csv), figures (figures/c_*.png) and report section."""

    r = out.report
    r.markdown((REPO_DIR / "docs" / "partC_derivation.md").read_text(encoding="utf-8"), level_offset=2)
    r.heading("C(b): sensitivity attribution of the trained networks", 3)
    r.para("For every correctly classified training sample, the gradient of the winning class's "
           "softmax output o_m with respect to the (encoded, z-scored) input is computed by the "
           "numba kernel `mlp.input_gradients`; the absolute values are averaged over those samples "
           "and ranked. One-hot columns are summed back to their original column (a sum favours "
           "categoricals with many levels; the permutation check below shuffles each original "
           "column as a whole and has no such bias).")
    for act, att in res.attribution.items():
        o = att["output"]
        show_table(out, o["table"].drop(columns=[c for c in ("source",) if c in o["table"]]),
                       f"c_attribution_{act}", floatfmt=".3g", formats={"share": ".1%"},
                       caption=f"{act}: mean |∂o_m/∂x| over {o['n_samples']:,} correctly classified "
                               f"training samples (of {o['n_total']:,})")
    out.save_figure(plots.attribution_bars({a: v["output"]["table"] for a, v in res.attribution.items()},
                                           "Sensitivity per encoded feature"),
                    "c_attribution_encoded.png", "Share of total attribution, encoded features")
    out.save_figure(plots.attribution_bars({a: v["output"]["by_source"] for a, v in res.attribution.items()},
                                           "Sensitivity per original column"),
                    "c_attribution_original.png", "Share of total attribution, original columns "
                    "(one-hot columns summed)")
    out.save_table(res.comparison, "c_comparison", floatfmt=".3f",
                   caption="Original columns side by side: attribution share and rank per network "
                           "(∂o_m/∂x, the pre-softmax logit ∂a_m/∂x and integrated gradients) and Part A's "
                           "predictive power")
    r.bullets(_integrated_lines(res))

    r.heading("Cross-checks", 3)
    lines = []
    for act, table in res.permutation_tables.items():
        used = res.checks[act].get("permutation_rows", {})
        sampled = "; ".join(f"{split}: a seeded sample of {a:,} of its {b:,} rows"
                            for split, (a, b) in used.items() if a < b)
        out.save_table(table, f"c_permutation_{act}", floatfmt=".4f",
                       caption=f"{act}: permutation importance (accuracy drop when a column is "
                               f"shuffled, {plural_text(res.repeats, 'repeat')}), training split"
                               + (" and test set" if "perm. importance (test)" in table.columns else "")
                               + (f" ({sampled})" if sampled else ""))
        ch = res.checks[act]
        if np.isnan(ch["spearman_perm_train"]):
            agree = ("permutation importance is zero for every column on the training split (the network "
                     "predicts the same class whatever one column holds), so no rank correlation is defined")
        else:
            agree = (f"Spearman correlation of the attribution ranking with permutation importance "
                     f"{ch['spearman_perm_train']:+.2f} on the training split"
                     + (" (test has no labels, so no test-set permutation check)"
                        if ch["spearman_perm_test"] is None else
                        f" and {ch['spearman_perm_test']:+.2f} on the test set") + " (original columns)")
        lines.append(
            f"{rp.literal(act, code=True)}: {agree}; with a network whose weights are re-drawn at random the ranking "
            f"correlates {ch['spearman_randomised']:+.2f} with the trained one — the sanity check " +
            ("passes: the attribution depends on what the network learned." if ch["randomisation_passed"] else
             f"FAILS (≥ {ch['randomisation_threshold']:g}): the ranking barely depends on the learned weights, "
             "so it may reflect the input statistics more than the model."))
    r.bullets(lines)

    r.heading("Interpretation", 3)
    lines = []
    for act, att in res.attribution.items():
        bs = att["output"]["by_source"]
        top = bs.iloc[0]
        second = bs.iloc[1] if len(bs) > 1 else None
        text = (f"{rp.literal(act, code=True)} relies most on {rp.literal(top['feature'], code=True)} ({top['share']:.0%} of the attribution"
                + (f", {top['score'] / second['score']:.1f}× the next column {rp.literal(second['feature'], code=True)})"
                   if second is not None and second["score"] > 0 else ")"))
        if res.pps is not None:
            text += (f"; its ranking {_agreement_with_part_a(res.pps, res.checks[act]['spearman_vs_partA'])}, "
                     f"and Part A's strongest feature is {rp.literal(res.pps.index[0], code=True)}")
        lines.append(text + ".")
    if res.dominant_agree:
        lines.append(f"The feature Part A flagged as suspiciously dominant, {rp.literal(res.dominant, code=True)}, is the "
                     f"top-ranked input of {', '.join('`%s`' % a for a in res.dominant_agree)}: the network "
                     "leans on exactly the feature whose relationship with the label Part D must check.")
    r.bullets(lines)
