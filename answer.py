"""What a run tells the user at the end: the answer on the console, ``predictions.csv``
and the underfitting notes beside every network's accuracy.

``answer_lines`` reads the parts' results (Part B's chosen network, Part D's verdict
and mitigation) and says them in a few plain lines; ``write_predictions`` writes the
chosen network's predictions for every test row; ``underfit_notes`` applies
``training``'s underfitting rules to every network of Part B.
"""
import importlib

import report as rp


def answer_lines(ctx):
    """The run's answer for the console, a few plain lines from the results: the chosen
    network's test accuracy against validation and the majority baseline, the verdict
    and its suspects, the recommended mitigation and the diagnosis's fix with their
    measured effect. Empty when Part B did not run."""
    b, d = ctx.results.get("B"), ctx.results.get("D")
    if not hasattr(b, "scores"):        # Part B did not run (or gave no networks)
        return []
    s, base = b.scores[b.best], b.baseline
    lines = []
    if s["test"]["acc"] is not None:
        majority = getattr(d, "base_test", None)
        lines.append(f"test accuracy {s['test']['acc']:.3f} with {b.best}, the network chosen on validation "
                     f"(validation {s['val']['acc']:.3f}"
                     + (f"; always predicting the majority class scores {majority:.3f} on test)"
                        if majority is not None else f"; majority class {base['val']:.3f} on validation)"))
    else:
        lines.append(f"{b.best}, the network chosen on validation, scores {s['val']['acc']:.3f} there "
                     f"(majority class {base['val']:.3f}); the test file has no labels, so no test accuracy")
    u = ((ctx.metrics.get("underfit") or {}).get("networks") or {}).get(b.best)
    if u and underfit_text(u):
        lines.append(f"{b.best} is {underfit_text(u)}")
    if d is not None:
        suspects = ", ".join(d.suspects) or "none"
        lines.append(f"verdict: {', '.join(d.verdict.kinds)}; suspects: {suspects}")
        m = importlib.import_module("part_d").recommended_mitigation(d)
        if m is not None:
            if m["is_baseline"]:
                text = "no mitigation beats the unmitigated network on validation"
            else:
                text = f"recommended on validation: {m['name']}"
                if m["test_acc"] is not None:
                    text += f", test {m['test_acc']:.3f} ({(m['test_acc'] - m['baseline_test_acc']) * 100:+.1f} points)"
            f = m.get("fix")
            if f is not None:
                text += f"; the diagnosis's fix: {f['name']}"
                if f.get("test_acc") is not None:
                    text += (f", test {f['test_acc']:.3f} "
                             f"({(f['test_acc'] - m['baseline_test_acc']) * 100:+.1f} points)")
            lines.append(text)
    return lines


def underfit_notes(ctx):
    """The underfitting rules (``training.underfitting``) on every network Part B trained,
    against one gradient-boosting reference on the same split: ``{"reference_val_acc",
    "networks": {activation: {...}}}``, or None when Part B did not run."""
    from training import REFERENCE_ROWS, underfitting
    b = ctx.results.get("B")
    if not hasattr(b, "networks") or ctx.plan is None or ctx.plan.reference is None:
        return None
    ref = ctx.plan.reference.result()
    nets = {act: underfitting(model, b.scores[act]["val"]["acc"], ref, len(ctx.data.y_val), ctx.cfg.iterations)
            for act, model in b.networks.items()}
    n_fit = len(ctx.data.y_train)
    return {"reference_val_acc": ref, "reference_rows": min(n_fit, REFERENCE_ROWS), "n_fit": n_fit,
            "networks": nets}


def underfit_text(u):
    """One note on a network's underfitting rules, or "" when neither fired."""
    if not (u["still_learning"] or u["below_reference"]):
        return ""
    why = []
    if u["still_learning"]:
        why.append(f"still learning (training loss −{u['loss_fall']:.1%} over the last fifth)")
    if u["below_reference"]:
        why.append(f"{u['reference_gap'] * 100:.1f} points below a gradient-boosting reference on validation")
    return "; ".join(why) + f": try {u['advice']}"


def write_predictions(ctx):
    """``predictions.csv``: for every row of the test file (``row``: its position, from 0),
    the predicted label and the probability of each class, from the network Part B chose
    on validation, and the true label when the test file has one. The path, or None
    when Part B did not run."""
    import numpy as np
    import pandas as pd
    b = ctx.results.get("B")
    if not hasattr(b, "networks"):      # Part B did not run
        return None
    model, classes = b.networks[b.best], ctx.dataset.classes
    P = model.predict_proba(ctx.data.X_test)                        # (n_test, k)
    frame = pd.DataFrame({"row": np.arange(len(P)), "predicted": classes[P.argmax(axis=1)]})
    if ctx.data.y_test is not None:
        frame["label"] = classes[ctx.data.y_test]
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = P[:, j]
    path = ctx.out / "predictions.csv"
    rp.write_atomic(path, rp.csv_text(frame, index=False, float_format="%.6g"))
    return path
