"""Part B: the MLP from scratch, and the magnitudes of its gradients.

``compute(ctx) -> BResult`` reads the networks Part B's worker jobs trained
(``Schedule.b_fits``, one per activation, and the sigmoid set-up study
``Schedule.b_sigmoid``), scores them and measures the gradient magnitudes per
layer, and for each activation where the layer ratio W2/W1 changes side of
``VANISHING`` during training, how much of it is the part of the gradients all
samples share (``_common_part``); ``render(result, output)`` writes the
accuracy and gradient tables, the loss and gradient figures and the report
section. The part's rules (``STUCK``, ``VANISHING``, ``SIGMOID_LIFT``) are
defined here.
"""
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

import mlp
import plots
import report as rp
from context import analysis_rows, PartResult, READABLE, show_table
from prose import names_text, plain_number, plural_text, points_text
from rules import Rule
from training import Fitted, best_network, evaluate, worker_arrays


# Priority of this part's worker jobs (lower runs first): Part B's trainings: the later parts wait for them.
JOB_PRIORITY = 0


# Part B's rules.
STUCK = Rule("stuck at baseline", 0.005,
             "a network is *stuck* when its validation accuracy is within {points} points of the "
             "majority-class baseline")
VANISHING = Rule("vanishing gradient", 1.0,
                 "the backward signal *vanishes* when mean |dL/dW2| / mean |dL/dW1| exceeds "
                 "{threshold:g} at the first iteration")
SIGMOID_LIFT = Rule("sigmoid set-up lift", 0.01,
                    "a change of set-up *lifts* the sigmoid network when it raises validation "
                    "accuracy by more than {points} point")


def _grad_table(hist, k=10):
    """Mean |dL/dW1|, |dL/dW2| and their ratio per iteration: the first and last ``k``
    iterations, or every iteration when ``k`` is None (the CSV ``render`` writes)."""
    g = hist["grad_abs_mean"]
    n = len(g)
    idx = list(range(n)) if k is None else sorted(set(range(min(k, n))) | set(range(max(0, n - k), n)))
    return pd.DataFrame({"iteration": [i + 1 for i in idx], "mean|dL/dW1|": g[idx, 0],
                         "mean|dL/dW2|": g[idx, 1], "ratio W2/W1": g[idx, 1] / g[idx, 0]})


def _ratio_crossing(ratio, threshold=VANISHING.threshold):
    """Where the layer ratio W2/W1 changes side of ``threshold`` during training:
    ``(iteration, stays)``, the first iteration (1-based) on the other side than the
    first iteration's, and whether every later one is there too; None if none is."""
    ratio = np.asarray(ratio, dtype=float)
    start = ratio[0] > threshold
    other = np.flatnonzero((ratio > threshold) != start)
    if other.size == 0:
        return None
    t = int(other[0])
    return t + 1, bool(np.all((ratio[t:] > threshold) != start))


def _common_part(model, X, y):
    """The layer ratio mean |dL/dW2| / mean |dL/dW1| at ``model``'s weights without the part
    of each gradient common to all samples, and the mean input of both layers.

    ``dL/dW_l = dL/db_l ⊗ mean(input_l) + sum_i delta_i (input_i - mean(input_l))^T / n``:
    the first term is what every sample's error shares (at the output, the gap between the
    predicted and the actual class shares) times the layer's mean input; the ratio is taken
    of the second. Returns ``(centred ratio, (mean input of layer 1, of layer 2))``.
    Part B's networks weigh every sample alike (no class weights), as the gradient here does.
    """
    W, b = model.weights_, model.biases_
    yi = np.searchsorted(model.classes_, y)
    _, dW, db = mlp.loss_and_grads(W, b, X, yi, model.activation, l2=model.l2)
    X64 = np.asarray(X, dtype=np.float64)
    g = mlp.ACTIVATION_TABLE[mlp.ACTIVATIONS[model.activation]].reference_g
    inputs = (X64, g(X64 @ W[0].T.astype(np.float64) + b[0]))          # (n, d), (n, h1)
    centred = [np.abs(dW[l] - np.outer(db[l], inputs[l].mean(axis=0))).mean() for l in (0, 1)]
    return float(centred[1] / centred[0]), tuple(float(a.mean()) for a in inputs)


def _sample_iterations(n, max_rows=8):
    """A few iterations out of ``1..n`` for a table a reader can take in: the first, the
    1-2-5 steps in between (gradients change fastest early) and the last, at most ``max_rows``."""
    steps, base = [], 1
    while base < n:
        steps += [x * base for x in (1, 2, 5) if x * base < n]
        base *= 10
    steps = sorted(set(steps) | {n})
    if len(steps) > max_rows:           # keep first and last, thin the middle evenly
        keep = [round(i * (len(steps) - 1) / (max_rows - 1)) for i in range(max_rows)]
        steps = [steps[i] for i in sorted(set(keep))]
    return steps


def sigmoid_trials(cfg):
    """(init, lr) of the sigmoid set-up study; the first is the run's own set-up (--lr, N(0, 0.1²) weights)."""
    return [("normal", cfg.lr), ("glorot", cfg.lr), ("glorot", cfg.lr * 10)]


def _sigmoid_verdict(rows):
    """``SIGMOID_LIFT`` on the study's rows (first: the run's own set-up, then Glorot
    at the same step, then Glorot with the larger step): "step_size", "init" or "activation"."""
    base = rows[0]["val_acc"]
    init_only, both = rows[1]["val_acc"] - base, rows[2]["val_acc"] - base
    if both > SIGMOID_LIFT.threshold and init_only <= SIGMOID_LIFT.threshold:
        return "step_size"
    if init_only > SIGMOID_LIFT.threshold:
        return "init"
    return "activation"


@dataclass(frozen=True, eq=False)
class BResult(PartResult):
    """Part B: one trained network per activation, gradient magnitudes per layer,
    the sigmoid set-up study and the gradient ratio against depth.

    ``gradients[act]`` is the network's mean |dL/dW| per iteration and weight
    layer, shape ``(n_iter, n_layers)`` (hidden layers first, output last).
    """
    n_features: int
    hidden: tuple
    n_classes: int
    lr: float
    iterations: int
    dtype: str
    n_fit: int
    n_val: int
    networks: dict              # activation -> trained mlp.MLP (for C and D)
    scores: dict                # activation -> evaluate() output
    best: str                   # best_network(scores)
    final: list                 # per activation: accuracies, final losses, iterations
    baseline: dict              # majority-class accuracy, {"train", "val"}
    stuck: list                 # activations stuck at the baseline (STUCK)
    gradients: dict             # activation -> ndarray (n_iter, n_layers)
    gradient_tables: dict       # activation -> DataFrame, first/last 10 iterations
    gradient_summary: list      # per activation: first/last magnitudes and ratios
    vanishing: list             # activations whose first-iteration ratio exceeds VANISHING
    crossings: dict             # activation -> _ratio_crossing of its ratio W2/W1, or None
    common_part: dict           # activation -> {"early"/"late": centred ratio at iteration 2 / after training,
                                #                "inputs": mean input of layers 1 and 2 at iteration 2}
    sigmoid_setup: Any          # list of rows, or None without sigmoid
    sigmoid_verdict: Any        # _sigmoid_verdict(sigmoid_setup), or None
    depths: list
    depth_ratios: dict          # activation -> ratio per depth
    depth_width: int
    repeats: int
    batch_size: Any = None      # rows per mini-batch (None: full batch)
    analysis_rows: Any = None   # (rows used, training rows) of the common-part and depth analyses
    solver: str = "gd"

    @property
    def method(self):
        """How the networks were trained, in words: "full-batch gradient descent" by default."""
        rule = "Adam" if self.solver == "adam" else "gradient descent"
        return (f"full-batch {rule}" if self.batch_size is None
                else f"{rule} on mini-batches of {self.batch_size:,} rows")

    @property
    def steps(self):
        """The iterations as the report counts them: full-batch iterations or epochs."""
        return (f"{self.iterations} full-batch iterations" if self.batch_size is None
                else f"{self.iterations} epochs")

    @property
    def accuracy(self):
        return {row["activation"]: {"train": row["train_acc"], "val": row["val_acc"]} for row in self.final}

    @property
    def headline(self):
        return "; ".join(f"{row['activation']} val {row['val_acc']:.3f}" for row in self.final)

    def to_metrics(self):
        grads = {}
        for act, g in self.gradients.items():
            grads[act] = {"mean_abs_dW": g.tolist()}
            row = next((r for r in self.gradient_summary if r["activation"] == act), None)
            if row is not None:
                grads[act].update({"ratio_first": float(row["ratio W2/W1 first"]),
                                   "ratio_last": float(row["ratio W2/W1 last"]),
                                   "ratio_median": row["ratio W2/W1 median"],
                                   "dW1_change": float(g[-1, 0] / g[0, 0])})
        m = {"accuracy": self.accuracy, "final": self.final, "majority_baseline": self.baseline,
             "stuck_at_baseline": self.stuck, "gradients": grads, "gradient_summary": self.gradient_summary}
        if self.sigmoid_setup is not None:
            m["sigmoid_setup"] = self.sigmoid_setup
        m["depth_ratios"] = {"depths": self.depths, "ratios": self.depth_ratios, "width": self.depth_width}
        m["headline"] = self.headline
        return m


def networks_step(data, models):
    """Step ``B.networks``: Part B's trained networks with their ``evaluate`` scores, on the
    matrices in each network's dtype that its workers trained on (``worker_arrays``: the
    network converts its inputs to it anyway; no second conversion of every row here)."""
    return {act: Fitted(model, evaluate(model, worker_arrays(data, model.get_params())))
            for act, model in models.items()}


def compute(ctx):
    """Part B's numbers: the trained networks (step ``B.networks``), their accuracies and
    per-layer gradient magnitudes, the sigmoid set-up study (jobs ``B.sigmoid``) and
    the gradient ratio against depth at initialisation (trained here, one iteration each)."""

    cfg, d, plan = ctx.cfg, ctx.data, ctx.plan
    fitted = plan.b_networks.result()
    nets = {act: f.model for act, f in fitted.items()}
    scores = {act: f.scores for act, f in fitted.items()}
    base = float(np.bincount(d.y_train).max() / len(d.y_train))
    base_val = float(np.mean(d.y_val == np.bincount(d.y_train).argmax()))
    rows = []
    for act, model in nets.items():
        h = model.history_
        rows.append({"activation": act, "train_acc": scores[act]["train"]["acc"],
                     "val_acc": scores[act]["val"]["acc"],
                     "final_loss": float(h["loss"][-1]), "final_val_loss": float(h["val_loss"][-1]),
                     "iterations": model.n_iter_})
    stuck = [row["activation"] for row in rows if abs(row["val_acc"] - base_val) < STUCK.threshold]

    grads = {act: model.history_["grad_abs_mean"] for act, model in nets.items()}
    tables, summary_rows = {}, []
    if len(cfg.hidden) >= 2:
        for act, model in nets.items():
            tables[act] = _grad_table(model.history_)
            g = grads[act]
            ratio = g[:, 1] / g[:, 0]
            summary_rows.append({"activation": act, "dW1 first": g[0, 0], "dW1 last": g[-1, 0],
                                 "dW2 first": g[0, 1], "dW2 last": g[-1, 1],
                                 "ratio W2/W1 first": ratio[0], "ratio W2/W1 last": ratio[-1],
                                 "ratio W2/W1 median": float(np.median(ratio))})
    vanishing = [row["activation"] for row in summary_rows if row["ratio W2/W1 first"] > VANISHING.threshold]
    crossings, common = {}, {}
    keep = analysis_rows(len(d.y_train), cfg.seed)       # every row of the course's data
    Xa, ya = d.X_train[keep], d.y_train[keep]
    if len(cfg.hidden) >= 2:
        for act, model in nets.items():
            crossings[act] = _ratio_crossing(grads[act][:, 1] / grads[act][:, 0])
            # the same network after its first step (same set-up, one iteration): iteration 2's gradient
            early = clone(model).set_params(n_iter=1, early_stopping=False).fit(Xa, ya)
            (ratio_early, inputs), (ratio_late, _) = (_common_part(m, Xa, ya) for m in (early, model))
            common[act] = {"early": ratio_early, "late": ratio_late, "inputs": inputs}

    sig_rows = verdict = None
    if "sigmoid" in cfg.activations:
        sig_rows = []
        for init, lr in sigmoid_trials(cfg):
            model = nets["sigmoid"] if (init, lr) == ("normal", cfg.lr) else plan.b_sigmoid[(init, lr)].result()
            g = model.history_["grad_abs_mean"]
            sig_rows.append({"init": init, "lr": lr, "train_acc": model.score(d.X_train, d.y_train),
                             "val_acc": model.score(d.X_val, d.y_val),
                             "final_loss": float(model.history_["loss"][-1]),
                             "ratio W2/W1 median": float(np.median(g[:, 1] / g[:, 0])) if g.shape[1] > 2 else None})
        verdict = _sigmoid_verdict(sig_rows)

    depths, width, ratios = list(cfg.study.depths), cfg.hidden[0], {}
    for act in cfg.activations:
        vals = []
        for depth in depths:
            per_seed = []
            for s in range(cfg.study.repeats):
                probe = mlp.MLP(hidden=(width,) * depth, activation=act, n_iter=1, lr=cfg.lr,
                                init="normal", init_scale=0.1, seed=cfg.seed + s, dtype=cfg.dtype)
                probe.fit(Xa, ya)
                g = probe.history_["grad_abs_mean"][0]
                per_seed.append(g[depth - 1] / g[0])
            vals.append(float(np.exp(np.mean(np.log(per_seed)))))
        ratios[act] = vals
    return BResult(
        n_features=d.X_train.shape[1], hidden=cfg.hidden, n_classes=len(ctx.dataset.classes),
        lr=cfg.lr, iterations=cfg.iterations, dtype=cfg.dtype, n_fit=len(d.y_train),
        n_val=len(d.y_val), networks=nets, scores=scores, best=best_network(scores), final=rows,
        baseline={"train": base, "val": base_val}, stuck=stuck, gradients=grads, gradient_tables=tables,
        gradient_summary=summary_rows, vanishing=vanishing, crossings=crossings, common_part=common,
        sigmoid_setup=sig_rows,
        sigmoid_verdict=verdict, depths=depths, depth_ratios=ratios, depth_width=width,
        repeats=cfg.study.repeats, batch_size=getattr(cfg, "batch_size", None),
        analysis_rows=(int(len(keep)), int(len(d.y_train))),
        solver=getattr(cfg, "solver", "gd"))


def _common_explains(res, act):
    """Whether the layer ratio without the part common to all samples is already on the final
    side of ``VANISHING`` at iteration 2, while the raw ratio starts on the other: then that
    common part is what put the raw ratio there."""
    cross, common = res.crossings.get(act), res.common_part.get(act)
    if not cross or not common:
        return False
    g = res.gradients[act]
    start_above = g[0, 1] / g[0, 0] > VANISHING.threshold
    return (common["early"] > VANISHING.threshold) != start_above


def crossing_sentence(act, crossing, grads, common):
    """The bullet on an activation whose layer ratio W2/W1 changes side of ``VANISHING``
    during training: where, and how much of the early ratio is the part of the gradients
    common to all samples (``_common_part``), quoted from the numbers."""
    iteration, stays = crossing
    ratio = grads[:, 1] / grads[:, 0]
    t = VANISHING.threshold
    above = ratio[0] > t
    text = (f"{rp.literal(act, code=True)}: the ratio mean |dL/dW2| / mean |dL/dW1| "
            f"{'falls below' if above else 'rises above'} {t:g} at iteration {iteration} "
            + ("and stays there" if stays else "(and crosses back later)")
            + f" ({ratio[0]:.2f} at the first iteration, {ratio[-1]:.2f} at the last).")
    if common is None:
        return text
    x1, x2 = common["inputs"]
    text += (" Part of each layer's gradient is common to all samples: the layer's bias gradient "
             "times its mean input (at the output, that common error is the gap between the predicted "
             f"and the actual class shares). Layer 1's inputs average {x1:.3f}, layer 2's "
             f"({act} outputs) {x2:.3f}. Without that part the ratio is {common['early']:.2f} at "
             f"iteration 2 and {common['late']:.2f} after training")
    early_side, late_side = (common["early"] > t) != above, (common["late"] > t) != above
    if early_side:
        text += (f": the ratio {'above' if above else 'below'} {t:g} at the start is that common part, "
                 "which fades as training goes on, not a signal that "
                 + ("shrinks" if above else "grows") + " on its way back to the first layer.")
    elif late_side:
        text += (": without it the ratio changes side too, so the signal passed back to the first layer "
                 "itself changes during training.")
    else:
        text += "."
    return text


_SIGMOID_VERDICTS = {
    "step_size": "Glorot initialisation alone does not lift it by more than a point within {iterations} "
                 "iterations; with the larger step it does. What holds the sigmoid network back at the "
                 "run's settings (--lr) is the step size, too small for gradients that shrink by "
                 "g'(z) ≤ 0.25 per layer — not an inability of sigmoid to fit this task.",
    "init": "The initialisation alone already lifts it: the N(0, 0.1²) weights leave the sigmoid units "
            "in a regime where too little gradient reaches the first layer.",
    "activation": "Neither change lifts it by more than a point within {iterations} iterations: here "
                  "the activation itself is the limit.",
}


def render(res, out):
    """Part B's tables (tables/b_*.csv), figures (figures/b_*.png) and report section."""

    r = out.report
    base, base_val = res.baseline["train"], res.baseline["val"]
    r.heading(f"B(a): two hidden layers, {res.method}", 3)
    r.para(f"Network {res.n_features}-{'-'.join(map(str, res.hidden))}-{res.n_classes}"
           f" (softmax output, mean cross-entropy), weights N(0, 0.1²), zero biases, learning rate "
           f"{res.lr:g}, {res.steps}, {res.dtype}; trained on the "
           f"{res.n_fit:,}-row training split, validated on {res.n_val:,} rows. Forward "
           "pass, loss and backpropagation are hand-written numba kernels (`mlp.loss_and_grads`), "
           "checked against finite differences and a NumPy reference in the tests."
           + (f" The gradient decomposition and the depth probes below use a seeded sample of "
              f"{res.analysis_rows[0]:,} of the {res.analysis_rows[1]:,} training rows (the "
              f"networks train on every row)."
              if res.analysis_rows and res.analysis_rows[0] < res.analysis_rows[1] else ""))
    final = pd.DataFrame(res.final)
    show_table(out, final, "b_accuracy", caption=f"Final accuracy (majority-class "
                f"baseline: train {base:.3f}, validation {base_val:.3f})", floatfmt=".3f",
                shown=final.rename(columns=READABLE), na={"final loss": "diverged", "final validation loss":
                                                          "diverged"})
    out.save_figure(plots.accuracy_curves({a: n.history_ for a, n in res.networks.items()}, baseline=base),
                    "b_accuracy_curves.png", "Train (solid) and validation (dashed) accuracy per iteration")
    best = next(row for row in res.final if row["activation"] == res.best)
    text = (f"{rp.literal(best['activation'], code=True)} reaches the best validation accuracy, {best['val_acc']:.3f} "
            f"(train {best['train_acc']:.3f}).")
    if res.stuck:
        one = len(res.stuck) == 1
        text += (f" {names_text(res.stuck)} {'is' if one else 'are'} stuck ({STUCK.description}; "
                 f"baseline {base_val:.3f}): {'it predicts' if one else 'they predict'} (almost) only the "
                 "majority class.")
    r.para(text)

    r.heading("B(b): gradient magnitudes per layer", 3)
    series = {}
    for act, g in res.gradients.items():
        series[(act, "layer 1")] = g[:, 0]
        if g.shape[1] > 2:
            series[(act, "layer 2")] = g[:, 1]
    out.save_figure(plots.gradient_magnitudes(series), "b_gradient_magnitudes.png",
                    "Mean |dL/dW| of the first and second hidden layer's weights per iteration (log scale)")
    if res.gradient_summary:
        r.para("In the tables, mean |dL/dW1| is the mean absolute gradient of the loss with respect to the weights of the "
               "first hidden layer (the layer nearest the input), mean |dL/dW2| the same for the second; "
               "their ratio W2/W1 above 1 means the gradient shrinks on its way back to the first layer.")
        shown, paths = None, []
        for act, g in res.gradients.items():
            full = _grad_table({"grad_abs_mean": g}, k=None)      # every iteration, for the CSV
            paths.append(out.save_table(full, f"b_gradients_{act}", show=False))
            sample = full[full["iteration"].isin(_sample_iterations(len(full)))].set_index("iteration")
            sample.columns = [f"{act} {c}" for c in sample.columns]
            shown = sample if shown is None else shown.join(sample, how="outer")   # the activations side by side
        links = ", ".join(f"[{rp.display_path(p, out.out)}]({rp.display_path(p, out.out)})" for p in paths)
        r.table(shown.reset_index(), formats={c: plain_number for c in shown.columns},
                caption=f"Gradient magnitudes at {len(shown)} of the {len(next(iter(res.gradients.values())))} "
                        f"iterations (every iteration: {links})")
        rows = res.gradient_summary
        show_table(out, pd.DataFrame(rows), "b_gradient_summary", caption="Gradient magnitudes: first vs "
                    "last iteration", formats={c: plain_number for c in rows[0] if c != "activation"})
        lines = []
        for row in rows:
            first, last = row["ratio W2/W1 first"], row["ratio W2/W1 last"]
            where = "smaller in the first layer" if first > VANISHING.threshold else "larger in the first layer"
            lines.append(f"{rp.literal(row['activation'], code=True)}: at the first iteration mean |dL/dW2| / mean |dL/dW1| = "
                         f"{first:.2f} (gradients {where}); at the last iteration {last:.2f}. "
                         f"Over training mean |dL/dW1| goes from {plain_number(row['dW1 first'])} to "
                         f"{plain_number(row['dW1 last'])}.")
        if res.vanishing:
            vanishing = [row for row in rows if row["activation"] in res.vanishing]
            worst = max(vanishing, key=lambda row: row["ratio W2/W1 first"])
            cmp = "".join(f" ({o['activation']}: {o['ratio W2/W1 first']:.2f})" for o in rows if o is not worst)
            lines.append(f"With {rp.literal(worst['activation'], code=True)} the backward signal loses a factor "
                         f"{worst['ratio W2/W1 first']:.1f} between the second and the first hidden layer "
                         f"at the start of training{cmp}: each layer multiplies it by g'(z), which for "
                         f"{worst['activation']} is at most "
                         f"{mlp.ACTIVATION_TABLE[mlp.ACTIVATIONS[worst['activation']]].max_slope:g}, so the "
                         "layer nearest the input learns slowest. "
                         + ("By the rule this is the vanishing-gradient effect; the next point measures how much "
                            "of it is the part of the gradient that all samples share."
                            if _common_explains(res, worst["activation"]) else
                            "This is the vanishing-gradient effect, already visible with two hidden layers; the "
                            "depth study below shows how it compounds per layer."))
        else:
            lines.append(f"No activation shows vanishing gradients at the start ({VANISHING.description}): "
                         "with two hidden layers the backward signal does not vanish here.")
        lines += [crossing_sentence(row["activation"], res.crossings.get(row["activation"]),
                                    res.gradients[row["activation"]], res.common_part.get(row["activation"]))
                  for row in rows if res.crossings.get(row["activation"])]
        r.bullets(lines)
    else:
        r.para("Only one hidden layer: no layer-2/layer-1 ratio to report.")

    if res.sigmoid_setup is not None:
        r.heading("Sigmoid: activation or set-up?", 3)
        rows = res.sigmoid_setup
        show_table(out, pd.DataFrame(rows), "b_sigmoid_setup", formats={"lr": "g"}, na={"final loss": "diverged"},
                    shown=pd.DataFrame(rows).rename(columns=READABLE),
                    caption="Sigmoid networks with other initialisation and step size", floatfmt=".3f")
        base_row = rows[0]
        effects = [f"init {rp.literal(row['init'], code=True)} with lr {row['lr']:g}: {row['val_acc']:.3f} validation accuracy "
                   f"({points_text(row['val_acc'] - base_row['val_acc'])})" for row in rows[1:]]
        r.para(f"Against the run's own set-up (init `normal`, lr {base_row['lr']:g}: "
               f"{base_row['val_acc']:.3f}): " + "; ".join(effects) + ". "
               + _SIGMOID_VERDICTS[res.sigmoid_verdict].format(iterations=res.iterations)
               + f" (Rule: {SIGMOID_LIFT.description}.)")

    r.heading("Gradient ratio against depth", 3)
    depths, ratios = res.depths, res.depth_ratios
    out.save_figure(plots.depth_ratios(depths, ratios), "b_depth_ratios.png",
                    f"Mean |dL/dW| of the last hidden layer over the first, at initialisation "
                    f"(width {res.depth_width}, N(0, 0.1²), geometric mean of {plural_text(res.repeats, 'seed')})")
    out.save_table(pd.DataFrame({"hidden layers": depths, **{act: ratios[act] for act in ratios}}),
                   "b_depth_ratios", caption="Last-hidden / first-layer gradient ratio at init",
                   floatfmt=".3g")
    lines = []
    for act, vals in ratios.items():
        growth = (vals[-1] / vals[0]) ** (1 / (depths[-1] - depths[0]))
        lines.append(f"{rp.literal(act, code=True)}: ratio {plain_number(vals[0])} at {depths[0]} layers, "
                     f"{plain_number(vals[-1])} at {depths[-1]} layers (×{growth:.2f} per added layer).")
    r.bullets(lines)
