"""Question 2: does sharing one bias between the two paths into the output change training?

``q2_jobs`` queues the experiments (``shared_bias``'s network, per task and
learning rate) on the worker pool; ``compute(ctx) -> Q2Result`` gathers them
and applies the rules defined here (``Q2_SPEED``, ``Q2_STABILITY``,
``Q2_COSINE``, ``Q2_LEARNS``); ``render(result, output)`` writes the tables
(final loss and accuracy as mean ± standard deviation over seeds), the figures
(one panel per learning rate) and the answer: one line tying the findings to the
hypotheses of ``docs/q2_derivation.md`` (``HYPOTHESES``), then the findings per
task and whether the model that diverges less learns at all, every sentence
built from the numbers it quotes.
"""
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

import plots
import prep
import report as rp
import shared_bias
from context import REPO_DIR, PartResult, show_table
from prose import count_of, plural_text
from rules import Rule


# Priority of this part's worker jobs (lower runs first): Question 2's experiments fill the workers whenever no training waits.
JOB_PRIORITY = 2



# Question 2's rules (``_q2_verdict`` and ``render`` apply them).
Q2_SPEED = Rule("speed", 0.2,
                "sharing changes convergence *speed* at a learning rate when the median iterations to "
                "the loss threshold differ by more than {points}% (relative)")
Q2_STABILITY = Rule("stability", 0.2,
                    "sharing changes *stability* at a learning rate when the fractions of diverged "
                    "runs differ by at least {threshold:g}")
Q2_COSINE = Rule("path alignment", 0.2,
                 "the two bias-gradient paths are *aligned* when their mean cosine exceeds "
                 "{threshold:+.1f}, *opposed* below {negative:+.1f}, else nearly orthogonal")
Q2_LEARNS = Rule("learns", 0.0,
                 "a model *learns* at a learning rate when its mean final accuracy over the seeds "
                 "that did not diverge exceeds the task's majority-class share")

# The hypotheses of docs/q2_derivation.md the answer weighs, by their number and title
# there (tests/test_print.py checks the document still numbers them so).
HYPOTHESES = {"coupled": (2, "coupled paths"), "step": (3, "a larger effective step on b"),
              "none": (5, "no difference")}


def _hyp(key):
    number, title = HYPOTHESES[key]
    return f"hypothesis {number} ({title})"


def _q2_verdict(summary, speed_tol=Q2_SPEED.threshold, stab_tol=Q2_STABILITY.threshold):
    """Compare shared vs independent runs per learning rate; return rows and the findings.

    Speed: median iterations to the loss threshold differ by more than ``speed_tol``
    (relative). Stability: diverged fractions differ by at least ``stab_tol``.
    """
    by = {(s["model"], s["lr"]): s for s in summary}
    rows, slower, faster, less_stable, more_stable = [], [], [], [], []
    for lr in sorted({s["lr"] for s in summary}):
        sh, ind = by[("shared", lr)], by[("independent", lr)]
        it_s, it_i = sh["iters_to_threshold_median"], ind["iters_to_threshold_median"]
        rows.append({"lr": lr, "shared iters": "not reached" if it_s is None else it_s,
                     "independent iters": "not reached" if it_i is None else it_i,
                     "shared final loss": sh["final_loss_mean"], "independent final loss": ind["final_loss_mean"],
                     "shared final acc": sh["final_acc_mean"], "independent final acc": ind["final_acc_mean"],
                     "shared diverged": sh["diverged_frac"], "independent diverged": ind["diverged_frac"],
                     "cos(paths)": sh["mean_cos_paths"], "|δ_out|": sh["mean_norm_output_path"],
                     "|δ_hidden|": sh["mean_norm_hidden_path"]})
        if sh["diverged_frac"] - ind["diverged_frac"] >= stab_tol:
            less_stable.append(lr)
        elif ind["diverged_frac"] - sh["diverged_frac"] >= stab_tol:
            more_stable.append(lr)
        if it_s is not None and it_i is not None and max(it_s, it_i) > 0:
            rel = (it_s - it_i) / max(it_i, 1)
            if rel > speed_tol:
                slower.append(lr)
            elif rel < -speed_tol:
                faster.append(lr)
        elif it_s is None and it_i is not None:
            slower.append(lr)
        elif it_i is None and it_s is not None:
            faster.append(lr)
    return rows, {"slower": slower, "faster": faster, "less_stable": less_stable, "more_stable": more_stable}


def _q2_setup(cfg):
    """Seeds, learning rates and iterations of the Q2 experiments (``Config.study``)."""
    st = cfg.study
    return tuple(range(cfg.seed, cfg.seed + st.q2_seeds)), st.q2_lrs, st.q2_iterations


def _q2_tasks(ctx):
    """The Q2 tasks: the training split and a small synthetic 3-class task, ``{task: (X, Y one-hot)}``."""
    d, k = ctx.data, len(ctx.dataset.classes)
    Xs, ys = make_classification(n_samples=2000, n_features=5, n_informative=4, n_redundant=0,
                                 n_classes=3, n_clusters_per_class=1, random_state=ctx.cfg.seed)
    return {"data": (d.X_train, np.eye(k)[d.y_train]),
            "synthetic": ((Xs - Xs.mean(0)) / Xs.std(0), np.eye(3)[ys])}


def q2_jobs(ctx):
    """Queue the Q2 experiments, one job per task and learning rate (each learning
    rate's runs and threshold are independent of the others'); ``{task: [futures]}``."""
    cfg = ctx.cfg
    seeds, lrs, n_iter = _q2_setup(cfg)
    # in a worker one thread per job; in-process the experiment's own threads (--threads)
    n_jobs = 1 if ctx.jobs.workers else cfg.threads
    return {task: [ctx.jobs.submit(("q2", task, lr), shared_bias.bias_experiment, X, Y, lrs=(lr,), seeds=seeds,
                                   n_iter=n_iter, hidden="relu", output="softmax", loss="ce",
                                   n_jobs=n_jobs, priority=JOB_PRIORITY, group="Q2")
                   for lr in lrs]
            for task, (X, Y) in _q2_tasks(ctx).items()}


def _merge_bias_experiments(exps):
    """One ``shared_bias.bias_experiment`` result from results for disjoint learning rates
    (same task, seeds and iterations), in the order given."""
    config = dict(exps[0]["config"], lrs=[lr for e in exps for lr in e["config"]["lrs"]])
    return {"config": config, "summary": [s for e in exps for s in e["summary"]],
            "curves": {key: c for e in exps for key, c in e["curves"].items()}}


_Q2_WORDS = {"slower": "slower", "faster": "faster", "less_stable": "diverges more",
             "more_stable": "diverges less"}
# The same findings as ``render``'s answer words them, in the order it lists them.
_Q2_ANSWERS = {"less_stable": "diverges more often", "more_stable": "diverges less often",
               "slower": "converges more slowly", "faster": "converges faster"}


@dataclass(frozen=True, eq=False)
class Q2Result(PartResult):
    """Question 2: shared vs independent biases per task and learning rate.

    ``experiments[task]`` is the merged ``shared_bias.bias_experiment`` result
    (``config``, ``summary``, ``curves``); ``tables[task]`` the per-learning-rate
    comparison; ``findings[task]`` the learning rates where sharing is
    slower/faster/less_stable/more_stable (``Q2_SPEED``, ``Q2_STABILITY``).
    """
    seeds: tuple
    lrs: tuple
    n_iter: int
    n_rows: int
    n_features: int
    n_classes: int
    experiments: dict
    tables: dict
    findings: dict
    cosines: list               # mean cosine of the two bias-gradient paths per shared run setting
    path_ratios: list           # hidden-path / output-path norm per shared run setting
    majority: dict              # task -> share of the task's most frequent class (accuracy of always predicting it)
    final_loss_sd: dict         # task -> {(model, lr): sd of the final loss over the seeds that did not diverge}

    @property
    def answer(self):
        changed = any(f["less_stable"] or f["more_stable"] or f["slower"] or f["faster"]
                      for f in self.findings.values())
        return "yes" if changed else "no"

    @property
    def headline(self):
        return f"answer: {self.answer}; " + "; ".join(
            f"{t}: shared " + ", ".join(f"{_Q2_WORDS[k]} at lr {'/'.join(f'{x:g}' for x in v)}"
                                        for k, v in f.items() if v)
            if any(f.values()) else f"{t}: no change" for t, f in self.findings.items())

    def to_metrics(self):
        m = {task: {"config": exp["config"], "summary": exp["summary"], "findings": self.findings[task],
                    "table": prep.to_jsonable(self.tables[task])}
             for task, exp in self.experiments.items()}
        m["answer"] = self.answer
        m["headline"] = self.headline
        return m


def compute(ctx):
    """Question 2's numbers: the merged experiments of the jobs ``Q2.runs``, the
    comparison per learning rate and the findings."""
    cfg, d = ctx.cfg, ctx.data
    seeds, lrs, n_iter = _q2_setup(cfg)
    experiments, tables, findings = {}, {}, {}
    for task, futures in ctx.plan.q2_runs.items():
        t0 = time.perf_counter()
        exp = experiments[task] = _merge_bias_experiments([f.result() for f in futures])
        print(f"    Q2 {task}: {len(lrs) * len(seeds) * 2} runs × {n_iter} iterations "
              f"(waited {time.perf_counter() - t0:.1f} s)", flush=True)
        rows, findings[task] = _q2_verdict(exp["summary"])
        tables[task] = pd.DataFrame(rows)
    shared = [s for t in findings for s in experiments[t]["summary"] if s["model"] == "shared"]
    majority = {task: float(Y.mean(axis=0).max()) for task, (_, Y) in _q2_tasks(ctx).items()}
    return Q2Result(seeds=seeds, lrs=lrs, n_iter=n_iter, n_rows=len(d.y_train),
                    n_features=d.X_train.shape[1], n_classes=len(ctx.dataset.classes),
                    experiments=experiments, tables=tables, findings=findings,
                    cosines=[s["mean_cos_paths"] for s in shared if s["mean_cos_paths"] is not None],
                    path_ratios=[s["mean_norm_hidden_path"] / s["mean_norm_output_path"] for s in shared
                                 if s["mean_norm_output_path"]],
                    majority={task: majority[task] for task in experiments},
                    final_loss_sd={task: _final_loss_sd(exp["curves"]) for task, exp in experiments.items()})


def _final_loss_sd(curves):
    """{(model, lr): standard deviation of the final loss over the seeds that did not diverge
    (None when every seed diverged)}, the spread beside ``final_loss_mean``."""
    out = {}
    for key, c in curves.items():
        final = np.asarray(c["loss"], dtype=float)[~np.asarray(c["diverged"], dtype=bool), -1]
        out[key] = float(final.std()) if final.size else None
    return out


_ORDER = {"shared": 0, "independent": 1}


def _in_order(summary):
    return sorted(summary, key=lambda x: (x["lr"], _ORDER.get(x["model"], 2)))


def _mean_sd(mean, sd):
    """ "mean ± sd", both to 3 decimals (losses and accuracies of a few units at most); the
    mean alone without a spread; None (the table's "diverged") without a mean."""
    if mean is None:
        return None
    if sd is None:
        return mean
    return f"{rp.format_number(mean, '.3f')} ± {rp.format_number(sd, '.3f')}"


def _q2_display(summary, n_seeds, n_iter, loss_sd=None):
    """Question 2's convergence table as a reader takes it in: one row per learning rate
    and model, counts as "k of n" seeds, "> n_iter" for a threshold the median seed never
    reaches, final loss and accuracy as mean ± standard deviation over the seeds that did
    not diverge (``loss_sd``: (model, lr) -> sd of the final loss; the accuracy's is in
    the summary). The CSV keeps ``_q2_verdict``'s numbers."""
    loss_sd = loss_sd or {}
    rows = []
    for sm in _in_order(summary):
        iters = sm["iters_to_threshold"]               # one entry per seed
        median = sm["iters_to_threshold_median"]
        rows.append({"lr": rp.format_number(sm["lr"], "g"), "biases": sm["model"],
                     "iterations to threshold": f"> {n_iter}" if median is None else rp.format_number(median, ".3g"),
                     "seeds reaching it": f"{sum(i is not None for i in iters)} of {len(iters)}",
                     "diverged": count_of(sm["diverged_frac"], n_seeds),
                     "final loss": _mean_sd(sm["final_loss_mean"], loss_sd.get((sm["model"], sm["lr"]))),
                     "final accuracy": _mean_sd(sm["final_acc_mean"], sm.get("final_acc_std"))})
    return pd.DataFrame(rows)


def _q2_paths_display(summary):
    """The two bias-gradient paths per learning rate, the two models side by side: their
    mean cosine and norms (one row per learning rate)."""
    rows = {}
    for sm in _in_order(summary):
        row = rows.setdefault(sm["lr"], {"lr": rp.format_number(sm["lr"], "g")})
        for name, key in (("cos(paths)", "mean_cos_paths"), ("|δ_out|", "mean_norm_output_path"),
                          ("|δ_hidden|", "mean_norm_hidden_path")):
            row[f"{name} {sm['model']}"] = sm[key]
    return pd.DataFrame(list(rows.values()))


def _label(task):
    return "training data" if task == "data" else "synthetic task"


def _lrs(values):
    """``"0.1"``, ``"0.1 and 0.3"``, ``"0.1, 0.3 and 1"``."""
    xs = [f"{x:g}" for x in sorted(values)]
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def _row(summary, model, lr):
    return next(s for s in summary if s["model"] == model and s["lr"] == lr)


def _q2_conclusion(findings, summaries, n_seeds):
    """The answer in one line, each finding tied to the hypothesis of docs/q2_derivation.md
    it bears on (``HYPOTHESES``): stability (3), speed (2, 3) and the learning rates
    where neither task shows a difference (5). ``summaries``: task -> the experiment's
    summary rows (the diverged counts quoted come from them)."""
    def at(key):
        return [(task, lr) for task, f in findings.items() for lr in f[key]]

    def diverged(task, lr, one_lr):
        return (f"{'' if one_lr else f'lr {lr:g} on the '}{_label(task)}: {count_of(_row(summaries[task], 'shared', lr)['diverged_frac'], n_seeds)}"
                f" seeds against {count_of(_row(summaries[task], 'independent', lr)['diverged_frac'], n_seeds)}")

    def where(pairs):
        return ", ".join(f"lr {lr:g} on the {_label(task)}" for task, lr in pairs)

    clauses = []
    less, more = at("less_stable"), at("more_stable")
    if less:
        clauses.append(f"{_hyp('step')} is borne out: the shared model diverges more often at lr "
                       f"{_lrs({lr for _, lr in less})} ({'; '.join(diverged(t, lr, len({x for _, x in less}) == 1) for t, lr in less)})")
    if more:
        clauses.append(f"against {_hyp('step')}, the shared model diverges less often at lr "
                       f"{_lrs({lr for _, lr in more})} ({'; '.join(diverged(t, lr, len({x for _, x in more}) == 1) for t, lr in more)})")
    if not less and not more:
        clauses.append(f"{_hyp('step')} finds no support: at no learning rate does the shared model "
                       "diverge more often")
    slower, faster = at("slower"), at("faster")
    if slower and faster:
        clauses.append(f"speed differs in both directions (slower: {where(slower)}; faster: {where(faster)}), "
                       "which no one hypothesis predicts")
    elif slower:
        clauses.append(f"sharing converges more slowly ({where(slower)}), as {_hyp('coupled')} predicts "
                       "where the paths pull against each other")
    elif faster:
        clauses.append(f"sharing converges faster ({where(faster)}), as {_hyp('step')} allows below "
                       "the rate where it diverges")
    else:
        clauses.append("convergence speed differs at no learning rate")
    lrs = sorted({s["lr"] for rows in summaries.values() for s in rows})
    busy = {lr for f in findings.values() for v in f.values() for lr in v}
    quiet = [lr for lr in lrs if lr not in busy]
    if quiet:
        clauses.append(f"at lr {_lrs(quiet)} neither task shows a difference beyond the rules, as "
                       f"{_hyp('none')} allows")
    return "**In one line:** " + "; ".join(clauses) + "."


def _learning_sentences(findings, summaries, majority, n_seeds):
    """Where sharing changes stability, whether the model that diverges less learns at all:
    its mean final accuracy against the task's majority-class share (``Q2_LEARNS``)."""
    out = []
    for task, f in findings.items():
        for key, stabler in (("less_stable", "independent"), ("more_stable", "shared")):
            for lr in f[key]:
                sm = _row(summaries[task], stabler, lr)
                acc, sd = sm["final_acc_mean"], sm.get("final_acc_std")
                if acc is None:
                    continue
                acc_text = f"{acc:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
                base = majority[task]
                lead = (f"{_label(task)}, lr {lr:g}: the {stabler} model diverges in "
                        f"{count_of(sm['diverged_frac'], n_seeds)} seeds")
                if acc - base > Q2_LEARNS.threshold:
                    out.append(f"{lead} and learns: its final accuracy, {acc_text}, is above the {base:.3f} "
                               "of always predicting the majority class.")
                else:
                    out.append(f"{lead} but does not learn either: its final accuracy, {acc_text}, is not above "
                               f"the {base:.3f} of always predicting the majority class, so at this rate "
                               "\"diverges less\" means only that its loss stays finite.")
    if out:
        out[-1] += f" (Rule: {Q2_LEARNS.description}.)"
    return out


def render(res, out):
    """Question 2's derivation, tables (tables/q2_*.csv), figures (figures/q2_*.png) and answer."""

    r = out.report
    r.markdown((REPO_DIR / "docs" / "q2_derivation.md").read_text(encoding="utf-8"), level_offset=2)
    r.heading("Experiment", 3)
    r.para(f"Both networks (hidden ReLU, softmax output, cross-entropy; hidden width m = k) start from "
           f"the same W, U, b (b1 = b2 = b for the independent one) drawn N(0, 0.1²) for each of "
           f"{len(res.seeds)} seeds and are trained by full-batch gradient descent for {res.n_iter} iterations "
           f"at learning rates {', '.join(f'{lr:g}' for lr in res.lrs)}. Tasks: the training split "
           f"({res.n_rows:,} × {res.n_features}, k = {res.n_classes}) and a synthetic 3-class task "
           "(2,000 × 5). A run *diverges* when its loss becomes non-finite or exceeds 10× its start. "
           "Iterations to threshold: first iteration at which a run has made 95% of the largest loss "
           "decrease any run achieved at that learning rate (median over seeds).")
    n = len(res.seeds)
    for task, exp in res.experiments.items():
        label = _label(task)
        show_table(out, res.tables[task], f"q2_{task}",
                   shown=_q2_display(exp["summary"], n, res.n_iter, res.final_loss_sd[task]),
                   floatfmt=".3g", na={"final loss": "diverged", "final accuracy": "diverged"}, key=2,
                   caption=f"{label}: shared vs independent biases per lr, over {plural_text(n, 'seed')}. "
                           f"Iterations to threshold: median over seeds (> {res.n_iter}: most seeds do "
                           f"not reach it within the {res.n_iter} iterations); final loss and accuracy: "
                           "mean ± standard deviation over the seeds that did not diverge (always "
                           f"predicting the majority class scores {res.majority[task]:.3f})")
        r.table(_q2_paths_display(exp["summary"]), floatfmt=".3g",
                caption=f"{label}: the two bias-gradient paths per lr, mean over iterations and seeds: "
                        "cosine between them, norm of the output path |δ_out| and of the hidden path "
                        f"|δ_hidden| (also in tables/q2_{task}.csv)")
        curves = {f"lr = {lr:g}": {mdl: exp["curves"][(mdl, lr)]["loss"] for mdl in ("shared", "independent")}
                  for lr in res.lrs}
        out.save_figure(plots.loss_panels(curves, f"Q2 on the {label}: loss (mean, min–max over seeds)",
                                          one_row=True),
                        f"q2_{task}_loss.png", f"{label}: training loss per iteration, shared vs independent")
        # one panel per learning rate, two curves in each (plots.MAX_LINES)
        paths = {f"lr = {lr:g}": {"|δ_out|": exp["curves"][("shared", lr)]["norm_output_path"],
                                  "|δ_hidden|": exp["curves"][("shared", lr)]["norm_hidden_path"]}
                 for lr in res.lrs}
        out.save_figure(plots.loss_panels(paths, f"Q2 on the {label}: bias-gradient path norms, shared bias "
                                          "(mean, min–max over seeds)", ylabel="norm", one_row=True),
                        f"q2_{task}_paths.png", f"{label}: norms of the output-path and hidden-path bias "
                        "gradients of the shared model, per learning rate (mean and min–max over seeds; "
                        "a gap: every seed diverged)")

    r.heading("Answer", 3)
    summaries = {task: exp["summary"] for task, exp in res.experiments.items()}
    lines = [_q2_conclusion(res.findings, summaries, n)]
    for task, f in res.findings.items():
        parts_ = [f"sharing {phrase} at lr {', '.join(f'{x:g}' for x in f[key])}"
                  for key, phrase in _Q2_ANSWERS.items() if f[key]]
        lines.append(f"{_label(task)}: " + ("; ".join(parts_) if parts_ else
                                            f"no difference beyond the rules ({Q2_SPEED.description}; "
                                            f"{Q2_STABILITY.description})") + ".")
    lines += _learning_sentences(res.findings, summaries, res.majority, n)
    cos = res.cosines
    if cos:
        mean = np.mean(cos)
        lines.append(f"The two bias-gradient paths have mean cosine {mean:+.2f} (range "
                     f"{min(cos):+.2f} to {max(cos):+.2f}) over runs: "
                     + ("they mostly pull b the same way, so the step on b is the sum of two aligned "
                        "gradients — a larger effective learning rate on b." if mean > Q2_COSINE.threshold else
                        "they mostly pull b in opposite directions, so the shared b must compromise "
                        "between what the hidden and the output layer need." if mean < -Q2_COSINE.threshold
                        else "they are nearly orthogonal on average: the shared b follows two unrelated demands.")
                     + f" The hidden path is {np.median(res.path_ratios):.2f}× the output path (median)."
                     + f" (Rule: {Q2_COSINE.description}.)")
    changed = res.answer == "yes"
    lines.insert(0, f"**Does sharing the bias change convergence speed or stability? {res.answer.capitalize()}**"
                 + (" — measurably, in the settings listed below." if changed else
                    " — not measurably in these settings."))
    r.bullets(lines)
