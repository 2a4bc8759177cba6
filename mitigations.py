"""Part D's mitigations: the one table of what Part D may train or correct, and how.

Each row (``Mitigation``) declares its name (the id the diagnosis's verdict
kinds lead to and ``metrics.json`` can be joined on), the row label the report
shows, the verdict kinds it answers (``shift.KINDS``; none for a general
option that is always tried), how it prepares the network (``Prepare``:
retrain with options, retrain on changed data, retrain with each training row
weighted, or correct the outputs after the fact), whether the combined mitigation may merge it, and its one-line
explanation for the report. Part D trains the rows; validation chooses among
them (``part_d.recommend``), never test.

Adding a mitigation is one row here (plus an ``MLP`` option if it needs one);
``part_d.mitigations_step`` dispatches on ``Prepare`` and nothing else.
"""
from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable

import numpy as np

import shift


class Prepare(Enum):
    """How a mitigation changes the baseline network."""
    OPTIONS = "retrain on the same data with MLP options"
    DATA = "retrain on changed data"
    POST_HOC = "correct the baseline's outputs, no retraining"
    WEIGHTS = "retrain on the same data with each training row weighted"


@dataclass(frozen=True)
class Mitigation:
    """One row of ``MITIGATIONS``.

    Attributes
    ----------
    name : str
        The id (``"drop_features"``, ``"l2"`` ...): unique in the table.
    label : str
        The report's row name; ``{features}`` is replaced by the features it acts on.
    answers : tuple of str
        Verdict kinds (``shift.KINDS``) it answers, acting on those kinds' suspects;
        empty for a general option, trained whatever the verdict.
    prepare : Prepare
    explain : str
        One line for the report: what it does and when it helps.
    params : tuple of (str, value)
        ``Prepare.OPTIONS``: the ``mlp.MLP`` options it sets.
    make : callable or None
        ``Prepare.DATA``: ``(dataset, features, seed) -> prep.Dataset`` (None: the
        run's dataset, encoded with ``encode``); ``Prepare.POST_HOC``:
        ``(baseline, train_shares) -> model`` with ``predict``; ``Prepare.WEIGHTS``:
        ``(X_train, X_test, seed) -> RowWeights`` from the encoded features (never
        test labels), passed to ``MLP.fit(sample_weight=)``.
    encode : tuple of (str, value)
        ``Prepare.DATA``: options of ``prep.encode``.
    combinable : bool
        The combined mitigation may merge its options with the other helpful ones.
    replay : callable or None
        ``(baseline, params) -> model or None``: its exact result from the baseline's
        own training record, when that exists (then it is not trained again).
    """
    name: str
    label: str
    answers: tuple
    prepare: Prepare
    explain: str
    params: tuple = ()
    make: Callable = None
    encode: tuple = ()
    combinable: bool = False
    replay: Callable = None

    def row_name(self, features=()):
        """The report's name of the row acting on ``features``."""
        return self.label.format(features=", ".join(features))

    @property
    def options(self):
        """``params`` as a dict of ``mlp.MLP`` options."""
        return dict(self.params)


def without_columns(dataset, columns):
    """A copy of ``dataset`` without the raw feature ``columns``."""
    columns = list(columns)
    return replace(dataset, train=dataset.train.drop(columns=columns),
                   test=dataset.test.drop(columns=columns),
                   numeric=[c for c in dataset.numeric if c not in columns],
                   categorical=[c for c in dataset.categorical if c not in columns])


def hot_deck_train(dataset, columns, seed):
    """A copy of ``dataset`` whose train missing values in ``columns`` are replaced by random
    observed train values of the same column (hot-deck), so that whether a value is
    missing no longer carries the label; test is unchanged (its own missing values go
    through the run's train-fitted imputation)."""
    rng = np.random.default_rng(seed)
    train = dataset.train.copy()
    for c in columns:
        miss = train[c].isna().to_numpy()
        seen = train.loc[~miss, c].to_numpy()
        if miss.any() and len(seen):
            train.loc[miss, c] = seen[rng.integers(0, len(seen), int(miss.sum()))]
    return replace(dataset, train=train)


def mask_like_test(dataset, columns, seed):
    """A copy of ``dataset`` in which each of ``columns`` lacks a usable value in train as often
    as in test: test's levels that never occur in train become missing values (the run's
    imputation fills them), and as many train rows (a random share equal to test's share of
    rows without a known value) lose theirs, so the network learns to predict without it.
    Reads test's feature values only (never its labels)."""
    rng = np.random.default_rng(seed)
    train, test = dataset.train.copy(), dataset.test.copy()
    for c in columns:
        if c in dataset.categorical:
            known = set(train[c].dropna())
            test[c] = test[c].where(test[c].isna() | test[c].isin(known), np.nan)
        share = float(test[c].isna().mean()) - float(train[c].isna().mean())
        present = np.flatnonzero(train[c].notna().to_numpy())
        n = min(int(round(max(share, 0.0) * len(train))), len(present))
        if n:
            train.loc[train.index[rng.choice(present, n, replace=False)], c] = np.nan
    return replace(dataset, train=train, test=test)


# Importance weights are capped at this many times the mean ratio: a row weighted w counts
# as w rows, and where test has an input more than ten times as often as train, train has
# too few rows there for their ratio to be more than the domain classifier's noise (the odds
# of a probability near 1 grow without bound). The cap bounds how much one row counts, so the
# effective training size (Kish, reported) stays at least n / (largest weight).
WEIGHT_CLIP = 10.0


@dataclass(frozen=True, eq=False)
class RowWeights:
    """Per-row training weights and how they were made.

    Attributes
    ----------
    weights : ndarray of shape (n_train,)
        The density ratio p_test(x)/p_train(x) at each training row (out of fold),
        clipped at ``clip`` and rescaled to mean 1.
    clip : float
    clipped_share : float
        Share of training rows whose ratio was above ``clip``.
    effective_rows : float
        Kish's effective sample size (sum w)^2 / sum w^2 of the weighted training rows.
    auc : float
        Out-of-fold ROC AUC of the train-vs-test classifier (0.5: the inputs are alike).
    """
    weights: np.ndarray
    clip: float
    clipped_share: float
    effective_rows: float
    auc: float

    def to_dict(self):
        return {"clip": self.clip, "clipped_share": self.clipped_share, "effective_rows": self.effective_rows,
                "rows": int(len(self.weights)), "domain_auc": self.auc,
                "max_weight": float(self.weights.max()), "min_weight": float(self.weights.min())}


def importance_weights(X_train, X_test, seed, clip=WEIGHT_CLIP, max_rows=10_000):
    """``RowWeights`` for importance weighting: the density ratio p_test(x)/p_train(x) at each
    training row from ``performance.fit_density_ratio`` (a cross-fitted classifier telling
    training rows from test rows by their encoded features; never the labels, each row's
    ratio from a classifier that did not see it), clipped at ``clip`` and rescaled to mean 1.

    Parameters
    ----------
    X_train : ndarray of shape (n_train, n_features)
    X_test : ndarray of shape (n_test, n_features)
    seed : int
    clip : float, > 1
    max_rows : int, the classifier's rows per file (a subsample above it)
    """
    import performance
    if not clip > 1:
        raise ValueError(f"clip must be > 1 (a weight cap in multiples of the mean), got {clip!r}")
    ratio = performance.fit_density_ratio(X_train, X_test, n_refit=0, max_rows=max_rows, seed=seed)
    r = ratio.val / ratio.val.mean()            # the odds' scale depends on the classifier's class balance
    w = np.minimum(r, clip)
    w = w / w.mean()
    return RowWeights(weights=w, clip=float(clip), clipped_share=float(np.mean(r > clip)),
                      effective_rows=float(w.sum() ** 2 / (w @ w)), auc=ratio.auc)


class PriorCorrected:
    """The baseline network with its probabilities re-weighted from the training split's class
    shares to the shares that ``shift.em_priors`` estimates from the rows it is given, without
    their labels (``shift.prior_correction``; no retraining). ``predict(X)``: class indices."""

    def __init__(self, network, train_priors):
        self.network = network
        self.train_priors = np.clip(np.asarray(train_priors, dtype=np.float64), 1e-6, None)
        self.n_iter_, self.history_ = network.n_iter_, network.history_

    def estimated_priors(self, X):
        return shift.em_priors(np.clip(self.network.predict_proba(X), 1e-6, None), self.train_priors)

    def predict(self, X):
        P = self.network.predict_proba(X)
        return shift.prior_correction(P, self.train_priors, self.estimated_priors(X)).argmax(axis=1)


def _replay_early_stopping(baseline, params):
    import mlp
    return mlp.replay_early_stopping(baseline, params["patience"])


# The table, in the order Part D reports the rows: those answering a verdict
# first (in the order of the verdict's kinds), then the general options.
MITIGATIONS = (
    Mitigation("impute_without_signal", "impute {features} without its missingness signal", ("missingness",),
               Prepare.DATA, "impute the column without the missingness signal (hot-deck: a random observed "
               "value) and add no indicator columns, which would hand the network the train-only signal",
               make=hot_deck_train),
    Mitigation("drop_features", "remove {features}", ("relationship_broken", "concept_shift", "interaction"),
               Prepare.DATA, "retrain without the suspect columns: their relationship with the label does "
               "not hold on test", make=lambda ds, f, seed: without_columns(ds, f)),
    Mitigation("prior_correction", "prior correction (EM-estimated shares)", ("prior_shift",), Prepare.POST_HOC,
               "re-weight the network's probabilities from train's class shares to test's, estimated "
               "without labels (EM)", make=PriorCorrected),
    Mitigation("mask_like_test", "train with {features} missing as often as in test",
               ("missing_in_test", "unseen_levels"), Prepare.DATA,
               "hide the column's value in as many train rows as test lacks a value train knows (test's "
               "unseen levels become missing values), so the network learns to predict without it",
               make=mask_like_test),
    Mitigation("importance_weighting", f"importance weighting (p_test/p_train, clipped at {WEIGHT_CLIP:g})",
               ("covariate_shift",), Prepare.WEIGHTS,
               "weight each training row by how much more often test has inputs like it "
               "(p_test(x)/p_train(x) from a train-vs-test classifier on the features, never test labels; "
               f"clipped at {WEIGHT_CLIP:g}), so the loss the network minimises is test's",
               make=importance_weights),
    Mitigation("missing_indicators", "missing-value indicators", (), Prepare.DATA,
               "one indicator column per column with missing values; helps when missingness carries the "
               "label in train and test alike, and hands the network a train-only signal when it does not",
               encode=(("missing_indicators", True),)),
    Mitigation("class_weight", "class-weighted loss", (), Prepare.OPTIONS,
               "weight the loss by inverse class frequency, for rare classes", params=(("class_weight", "balanced"),),
               combinable=True),
    Mitigation("l2", "L2 1e-3", (), Prepare.OPTIONS, "penalise large weights (L2, 1e-3), against overfitting",
               params=(("l2", 1e-3),), combinable=True),
    Mitigation("early_stopping", "early stopping (val loss)", (), Prepare.OPTIONS,
               "keep the iterate with the lowest validation loss (patience 10), against overfitting",
               params=(("early_stopping", True), ("patience", 10)), combinable=True,
               replay=_replay_early_stopping),
    Mitigation("dropout", "dropout 0.2", (), Prepare.OPTIONS,
               "drop each hidden unit with probability 0.2 at every training step (inverted dropout), "
               "against overfitting", params=(("dropout", 0.2),), combinable=True),
)


def check_table(table):
    """Raise ``ValueError`` unless ``table``'s rows are well formed: unique names, known
    verdict kinds, what each ``Prepare`` needs."""
    names = [m.name for m in table]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"mitigation names must be unique; repeated: {dup}")
    for m in table:
        unknown = [k for k in m.answers if k not in shift.KINDS]
        if unknown:
            raise ValueError(f"mitigation {m.name!r} answers unknown verdict kinds {unknown}; "
                             f"known: {list(shift.KINDS)}")
        if m.prepare is Prepare.OPTIONS and not m.params:
            raise ValueError(f"mitigation {m.name!r} retrains with options but sets none (params)")
        if m.prepare is Prepare.POST_HOC and m.make is None:
            raise ValueError(f"mitigation {m.name!r} corrects outputs but has no make(baseline, shares)")
        if m.prepare is Prepare.WEIGHTS and m.make is None:
            raise ValueError(f"mitigation {m.name!r} weights rows but has no make(X_train, X_test, seed)")
        if m.prepare is Prepare.DATA and m.make is None and not m.encode:
            raise ValueError(f"mitigation {m.name!r} retrains on changed data but changes nothing "
                             "(give make or encode)")
    return table


check_table(MITIGATIONS)


def get(name, table=None):
    """The row called ``name``; ``ValueError`` naming the known ones when there is none."""
    table = MITIGATIONS if table is None else table
    for m in table:
        if m.name == name:
            return m
    raise ValueError(f"unknown mitigation {name!r}; known: {[m.name for m in table]}")


@dataclass(frozen=True)
class Planned:
    """A row of the table as Part D trains it for one run: the features it acts on and
    the verdict kinds (of this diagnosis) it answers."""
    mitigation: Mitigation
    features: tuple
    kinds: tuple

    @property
    def name(self):
        return self.mitigation.row_name(self.features)


def plan(diagnosis, table=None):
    """What Part D trains for ``diagnosis`` (a ``shift.Diagnosis``): first the rows that
    answer its verdict kinds, in the order of the kinds, each once, acting on the
    suspects of the kinds it answers (pooled, sorted); then every general option.

    Returns
    -------
    list of Planned
    """
    table = MITIGATIONS if table is None else table
    pooled = {}
    for kind in diagnosis.verdict.kinds:
        for m in table:
            if kind in m.answers:
                kinds, feats = pooled.get(m.name, ((), ()))
                new = tuple(s.feature for s in diagnosis.suspects if s.kind == kind and s.feature not in feats)
                pooled[m.name] = (kinds + (kind,), feats + new)
    out = [Planned(get(name, table), tuple(sorted(feats)), kinds) for name, (kinds, feats) in pooled.items()]
    return out + [Planned(m, (), ()) for m in table if not m.answers]


def merge_options(chosen):
    """The ``mlp.MLP`` options of the combinable rows ``chosen`` merged in their order; a row
    whose options conflict with an earlier one's is left out. ``(options, rows merged)``."""
    options, used = {}, []
    for m in chosen:
        if any(k in options and options[k] != v for k, v in m.params):
            continue
        options.update(m.params)
        used.append(m)
    return options, used
