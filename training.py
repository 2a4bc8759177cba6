"""Training networks for the parts: in a worker process or in this one.

``train_async`` queues an ``mlp.MLP`` fit with the run's defaults
(``fit_params``) on the job pool; ``fit_job``/``fit_scored_job`` are what the
workers run; ``evaluate`` scores a network on the train, validation and test
splits; ``best_network`` is THE rule that picks the network the later parts
study.
"""
import time
from dataclasses import dataclass
from typing import Any

import jobs as jobs_mod


# How often a training tells the job pool how far it is (``_progress``).
PROGRESS_STEPS = 50



def _progress(label, n_iter, every=None, steps=PROGRESS_STEPS):
    """A ``progress`` callback for ``MLP.fit`` printing iteration, loss and elapsed time
    (``every`` iterations, default a quarter of them) and telling the job pool how far
    the training is (``jobs.report_progress``, ``steps`` times per training), for the
    console's estimate of the time left."""
    every = every or max(1, n_iter // 4)
    tell = max(1, n_iter // steps)
    t0 = time.perf_counter()

    def report(t, loss, val_loss):
        if (t + 1) % tell == 0 or t + 1 == n_iter:
            jobs_mod.report_progress((t + 1) / n_iter)
        if t == 0 or (t + 1) % every == 0 or t + 1 == n_iter:
            val = "" if val_loss != val_loss else f", val loss {val_loss:.4f}"
            print(f"    {label}: iteration {t + 1}/{n_iter}, loss {loss:.4f}{val}, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return report


def fit_job(label, params, X, y, X_val, y_val):
    """One training, in a worker process or in-process: the fitted ``mlp.MLP``."""
    import mlp
    model = mlp.MLP(**params)
    model.fit(X, y, X_val, y_val, progress=_progress(label, params["n_iter"]))
    return model


def fit_params(cfg, **params):
    """The run's training defaults (``Config``) overridden by ``params``."""
    kw = dict(hidden=cfg.hidden, activation="relu", lr=cfg.lr, n_iter=cfg.iterations,
              init="normal", init_scale=0.1, seed=cfg.seed, dtype=cfg.dtype)
    kw.update(params)
    return kw


def train_async(ctx, label, data=None, priority=0, validate=True, group=None, **params):
    """Queue the training of an ``mlp.MLP`` on ``data`` (default: the run's encoded
    split) with the run's defaults overridden by ``params``; return its future.

    ``validate``: evaluate the validation split at every iteration (learning
    curves, early stopping); without it only the training loss is tracked.
    ``group``: the code of the part whose console section shows its lines.
    """
    d = ctx.data if data is None else data
    kw = fit_params(ctx.cfg, **params)
    key = ("fit", label, validate, tuple(sorted(kw.items())))
    return ctx.jobs.submit(key, fit_job, label, kw, d.X_train, d.y_train,
                           d.X_val if validate else None, d.y_val if validate else None,
                           priority=priority, group=group)


@dataclass(frozen=True, eq=False)
class Fitted:
    """A trained network and its ``evaluate`` scores on the data it was trained on."""
    model: Any
    scores: dict


def evaluate(model, data):
    """Accuracy and macro-F1 of ``model`` on the train, val and test arrays of ``data``,
    with the predictions (``"pred"``) they came from: ``{split: {"acc", "macro_f1", "pred"}}``
    (``acc`` and ``macro_f1`` None for a split without labels: an unlabelled test file)."""
    from sklearn.metrics import accuracy_score, f1_score
    out = {}
    for split in ("train", "val", "test"):
        y, p = data.y(split), model.predict(data.X(split))
        if y is None:
            out[split] = {"acc": None, "pred": p, "macro_f1": None}
            continue
        out[split] = {"acc": float(accuracy_score(y, p)), "pred": p,
                      "macro_f1": float(f1_score(y, p, average="macro"))}
    return out


def fit_scored_job(label, params, data, validate):
    """One training and its ``evaluate`` scores (in a worker): a ``Fitted``."""
    model = fit_job(label, params, data.X_train, data.y_train,
                     data.X_val if validate else None, data.y_val if validate else None)
    return Fitted(model, evaluate(model, data))


def best_network(scores):
    """THE rule that picks the network the later parts study: the highest validation
    accuracy (first in run order on ties). ``scores``: activation -> ``evaluate`` output."""
    return max(scores, key=lambda act: scores[act]["val"]["acc"])
