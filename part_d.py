"""Part D: test accuracy, why the network generalises or fails, and what fixes it.

The diagnosis itself (statistics, rules, verdict) is ``shift.diagnose``; this
module runs it on the best network of Part B (``diagnosis_step``), trains the
mitigations (``mitigations_step``, ``combination_after``), chooses one on
validation, and holds Part D's result (``DResult``), its rules, ``compute``,
``render`` and the sentences the summary quotes (``verdict_sentences``,
``recommended_mitigation``, ``mitigation_sentences``). From ``performance.py`` it
adds the network's test accuracy estimated without test labels and, on a labelled
test file, the validation -> test change split into covariate, conditional and
unseen terms (``estimate_performance``). Files above ``SAMPLE_ROWS`` rows are
diagnosed and estimated on a seeded sample stratified by label (``row_sample``).
"""
import hashlib
import re
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

import mlp
import performance
import plots
import prep
import mitigations
import shift
from context import PartResult, data_notes
from prose import as_sentence, fmt, points_text, verb_for
from rules import Rule
from training import STILL_LEARNING, Fitted, best_network, evaluate, fit_params, fit_scored_job, worker_arrays
from training import loss_fall as falling
import report as rp


# The diagnosis compares train and test and refits a model within test by 3-fold
# cross-validation: with fewer test rows it cannot say anything (``run_all`` skips Part D).
MIN_TEST_ROWS = 30

# Priority of this part's worker jobs (lower runs first): Part D's mitigation trainings: after Part B's.
JOB_PRIORITY = 1

# Above this many rows a file is replaced, for the diagnosis and the performance estimates, by a
# seeded sample of this many rows stratified by label (``row_sample``). ``shift.diagnose`` costs
# 2.4 s on 50,000 training and 25,000 test rows of generated data and 31 s on 200,000 and 100,000
# (one core; bench/performance_check.py --diagnose-rows 50000 200000 1000000); the course's files
# (41,348 and 7,297 rows) stay whole.
SAMPLE_ROWS = 50_000

# The performance estimates' cost bounds (``performance.fit_density_ratio``): 3 refitted
# domain classifiers for the ratio's noise, each fitted on at most 10,000 rows of a file.
RATIO_OPTIONS = {"n_refit": 3, "max_rows": 10_000}
# Fewest validation and test rows the estimates run on: the domain classifier is cross-fitted
# on 2 folds of at least 10 rows of each file (``performance.fit_density_ratio``).
MIN_ESTIMATE_ROWS = 20


def _slug(name, limit=60):
    """A file-name-safe, bounded and unique version of a column name: the name itself when
    it is short and safe, else its safe characters (at most ``limit``) and a digest of the
    name (so ``a/b`` and ``a b`` get two files, a 300-character name a short one)."""
    name = str(name)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "column"
    if safe == name and len(safe) <= limit:
        return safe
    return f"{safe[:limit]}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


@dataclass(frozen=True, eq=False)
class NetworkOnFrames:
    """Part B's network on raw frames: the run's fitted ``prep.Preprocessor``, then the MLP.

    The ``model=`` that ``shift.diagnose`` calls: ``predict_proba(frame)`` of shape
    (n_rows, n_classes), columns in ``classes_`` order (the dataset's label values).
    """
    preprocessor: Any
    network: Any
    classes_: list

    def predict_proba(self, frame):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", prep.UnseenCategoryWarning)
            X = self.preprocessor.transform(frame)
        return self.network.predict_proba(X)


def stratified_rows(labels, n, seed):
    """Sorted positions of a seeded sample of ``n`` of the rows, drawn within each label in
    proportion to its count (largest remainders get the rounding), so every label keeps its
    share; all positions when there are at most ``n`` rows.

    Parameters
    ----------
    labels : array-like of shape (n_rows,), or None (one stratum: a plain random sample)
    n : int, the sample size (>= 1)
    seed : int

    Returns
    -------
    ndarray of shape (min(n, n_rows),), int64
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the sample size must be an integer >= 1, got {n!r}")
    if labels is None:
        raise ValueError("labels must be an array (pass np.zeros(n_rows) for an unstratified sample)")
    labels = np.asarray(labels)
    if labels.dtype.kind in "biu":
        codes = pd.factorize(labels)[0]     # integers: the same groups, no text made per row
    else:
        codes = pd.factorize(pd.Series(labels.astype(object)).astype(str))[0]
    total = len(codes)
    if total <= n:
        return np.arange(total, dtype=np.int64)
    counts = np.bincount(codes)
    exact = counts * (n / total)
    take = np.floor(exact).astype(np.int64)
    take[np.argsort(-(exact - take), kind="stable")[:n - take.sum()]] += 1   # largest remainders
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(codes == c), k, replace=False) for c, k in enumerate(take) if k]
    return np.sort(np.concatenate(picks)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class RowSample:
    """The rows of each file Part D's diagnosis and performance estimates read.

    ``train_rows``, ``test_rows``: positions in ``dataset.train`` and ``dataset.test``
    (all of a file's rows when it has at most ``limit``; else a ``stratified_rows``
    sample of ``limit`` rows, by label, seeded with ``seed``; an unlabelled test file
    is sampled at random). ``n_train``, ``n_test``: the files' row counts.
    """
    limit: int
    seed: int
    n_train: int
    n_test: int
    train_rows: np.ndarray
    test_rows: np.ndarray

    @property
    def sampled(self):
        return len(self.train_rows) < self.n_train or len(self.test_rows) < self.n_test

    def sentence(self):
        """What was sampled, in one sentence ("" when both files were read whole)."""
        if not self.sampled:
            return ""
        parts = [f"{len(rows):,} of the {n:,} {name} rows" for rows, n, name in
                 ((self.train_rows, self.n_train, "training"), (self.test_rows, self.n_test, "test"))
                 if len(rows) < n]
        return (f"The diagnosis and the performance estimates ran on a seeded sample stratified by "
                f"label (seed {self.seed}): {' and '.join(parts)} (files above {self.limit:,} rows "
                "are sampled to that many; the networks were trained and scored on every row).")

    def to_dict(self):
        return {"sampled": self.sampled, "limit": self.limit, "seed": self.seed, "train_rows": len(self.train_rows),
                "train_rows_in_file": self.n_train, "test_rows": len(self.test_rows),
                "test_rows_in_file": self.n_test, "stratified_by": "label"}


def row_sample(dataset, seed, limit=None):
    """The ``RowSample`` of ``dataset`` (a ``prep.Dataset``) at ``limit`` rows per file
    (None: ``SAMPLE_ROWS``)."""
    limit = SAMPLE_ROWS if limit is None else limit
    y_tr = dataset.train[dataset.target].to_numpy()
    y_te = dataset.test[dataset.target].to_numpy() if dataset.test_labelled else np.zeros(len(dataset.test))
    return RowSample(limit=int(limit), seed=int(seed), n_train=len(dataset.train), n_test=len(dataset.test),
                     train_rows=stratified_rows(y_tr, limit, seed), test_rows=stratified_rows(y_te, limit, seed + 1))


@dataclass(frozen=True, eq=False)
class NetworkDiagnosis:
    """What changed between train and test, for Part B's best network (``network``).

    ``result`` is ``shift.diagnose``'s frozen ``shift.Diagnosis`` (verdict, suspects
    with their mechanism, gap, priors, evidence, rules); ``importance[split]`` the
    network's permutation importance per original column (descriptive evidence;
    ``"test"`` only when test has labels); ``sample`` the ``RowSample`` the diagnosis read.
    """
    network: str
    importance: dict
    result: Any
    sample: Any = None

    @property
    def suspects(self):
        """The suspect columns (raw names, sorted)."""
        return list(self.result.suspect_features)

    @property
    def seconds(self):
        return float(self.result.seconds)


def run_diagnosis(dataset, seed, model=None, val_rows=None, sample=None):
    """The train/test shift diagnosis: ``shift.diagnose`` on the dataset's raw frames (the
    one place that calls the diagnosis library). ``model``: a ``NetworkOnFrames`` (or
    None: the library's proxy model); ``val_rows``: positions in ``dataset.train`` of the
    rows ``model`` was not trained on; ``sample``: a ``RowSample`` (None: every row)."""
    train, test = dataset.train, dataset.test
    if sample is not None and sample.sampled:
        train, test = train.iloc[sample.train_rows], test.iloc[sample.test_rows]
        if val_rows is not None:        # positions within the sample of the validation rows it holds
            val_rows = np.flatnonzero(np.isin(sample.train_rows, val_rows))
    return shift.diagnose(train, test, dataset.target, list(dataset.numeric),
                          list(dataset.categorical), model=model, seed=seed, val_rows=val_rows)


def diagnosis_step(ctx, networks, checks):
    """Step ``D.diagnosis``: diagnose the shift with Part B's best network (on the run's
    validation split, which it was not trained on); the permutation importances of the
    step ``checks`` go along as descriptive evidence."""
    act = best_network({a: f.scores for a, f in networks.items()})
    perm = {}
    for split, pc in checks["permutation"].items():
        pc = pc["original"]
        perm[split] = dict(zip(pc["feature"], pc["perm_mean"].astype(float)))
    ds, d = ctx.dataset, ctx.data
    model = NetworkOnFrames(d.preprocessor, networks[act].model, ds.classes.tolist())
    val_rows = d.val_rows
    sample = row_sample(ds, ctx.cfg.seed)
    result = run_diagnosis(ds, ctx.cfg.seed, model=model, val_rows=val_rows, sample=sample)
    return NetworkDiagnosis(network=act, importance=perm, result=result, sample=sample)


@dataclass(frozen=True, eq=False)
class Performance:
    """The best network's accuracy on test estimated without test labels, and (labelled test)
    its validation -> test change split into covariate, conditional and unseen terms.

    ``estimate``: ``performance.estimate_accuracy`` (validation-calibrated, ``priors_test="auto"``,
    with the ``ratio``); ``true_accuracy``: the accuracy the test labels show on the same rows
    (None without labels); ``change``: ``performance.decompose_predictions`` with the same
    ratio (None without labels); ``n_val``, ``n_test``: the rows used; ``seconds``.
    """
    estimate: Any
    true_accuracy: Any
    change: Any
    n_val: int
    n_test: int
    seconds: float

    @property
    def error(self):
        """Estimate minus the true accuracy (None without test labels)."""
        return None if self.true_accuracy is None else self.estimate.estimate - self.true_accuracy

    @property
    def covered(self):
        """The estimate's interval holds the true accuracy (None without test labels)."""
        e = self.estimate
        return None if self.true_accuracy is None else bool(e.low <= self.true_accuracy <= e.high)

    def check_sentence(self, after_estimate=False):
        """The labelled self-check in one sentence ("" without labels); ``after_estimate``: the
        short form that follows the estimate's own sentence."""
        if self.true_accuracy is None:
            return ""
        e = self.estimate
        off = (f"{100 * self.true_accuracy:.1f}%, so the estimate is off by {100 * abs(self.error):.1f} points "
               f"({'inside' if self.covered else 'outside'} its interval)")
        cond = None if self.change is None else self.change.accuracy.conditional
        if not self.covered and cond is not None and cond.excludes_zero():
            off += (f": the decomposition puts {100 * abs(cond.value):.1f} points of the change in a changed "
                    "relationship between inputs and label, which no estimate without labels can see")
        if after_estimate:
            return f"The test labels show {off}."
        return (f"Estimated from validation without test labels, test accuracy would have been "
                f"{100 * e.estimate:.1f}% ({100 * e.level:g}% interval {100 * e.low:.1f}% to {100 * e.high:.1f}%); "
                f"the labels show {off}.")

    def to_dict(self):
        e = self.estimate
        out = {"estimate": e.estimate, "low": e.low, "high": e.high, "level": e.level,
               "calibrator": e.calibration, "priors_source": e.priors_source,
               "priors_used": None if e.priors_test is None else list(e.priors_test),
               "priors_validation": list(e.priors_val), "weighted_to_test_inputs": e.weighted,
               "unseen_share": e.unseen_share, "model_confidence": e.uncalibrated,
               "validation_accuracy": e.validation_accuracy, "n_val": self.n_val, "n_test": self.n_test,
               "true_accuracy": self.true_accuracy, "error": self.error, "covered": self.covered,
               "sentence": e.sentence()}
        change = None
        if self.change is not None:
            change = {"domain_auc": self.change.ratio.auc, "support_threshold": self.change.ratio.threshold,
                      "sentences": list(self.change.sentences())}
            for dec in (self.change.accuracy, self.change.log_loss):
                change[dec.metric] = {"validation": dec.validation, "test": dec.test, "level": dec.level} | {
                    t: {"value": getattr(dec, t).value, "low": getattr(dec, t).low, "high": getattr(dec, t).high}
                    for t in DECOMPOSITION_TERMS + ("unseen_share",)}
        return {"accuracy_estimate": out, "decomposition": change, "seconds": self.seconds}


# The decomposition's terms as the report names them (``performance.Decomposition`` fields).
DECOMPOSITION_TERMS = ("total", "covariate", "conditional", "unseen")
TERM_TEXT = {"total": "total change", "covariate": "covariate: inputs moved within train's range",
             "conditional": "conditional: P(label | inputs) changed", "unseen": "unseen: inputs train rarely shows"}


def estimate_performance(network, data, val_keep, test_rows, seed):
    """``Performance`` of ``network`` (an ``mlp.MLP``) on the encoded ``data``: validation rows
    where ``val_keep`` (bool, (n_val,)), test rows ``test_rows`` (positions); one density ratio
    (``RATIO_OPTIONS``) serves the accuracy estimate and the decomposition."""
    t0 = time.perf_counter()
    Xv, yv, Xt = data.X_val[val_keep], data.y_val[val_keep], data.X_test[test_rows]
    Pv, Pt = network.predict_proba(Xv), network.predict_proba(Xt)
    ratio = performance.fit_density_ratio(Xv, Xt, P_val=Pv, P_test=Pt, seed=seed, **RATIO_OPTIONS)
    # Bayes' rule to other class shares starts from validation's: only with every class in it
    every = bool(np.all(np.bincount(yv, minlength=Pv.shape[1]) > 0))
    est = performance.estimate_accuracy(Pv, yv, Pt, ratio=ratio, priors_test="auto" if every else None,
                                        seed=seed)
    true = change = None
    if data.y_test is not None:
        yt = data.y_test[test_rows]
        true = float(np.mean(Pt.argmax(axis=1) == yt))
        change = performance.decompose_predictions(Xv, yv, Pv, Xt, yt, Pt, ratio=ratio, seed=seed)
    return Performance(estimate=est, true_accuracy=true, change=change, n_val=int(len(yv)), n_test=int(len(Xt)),
                       seconds=time.perf_counter() - t0)


# Part D's mitigations that need no diagnosis: (name, data, MLP parameters).
# Data: None = the run's encoding; "indicators" = with missing-value indicators.
# Part D's rules.
TOUCHES_CAUSE = Rule("does not touch the cause", 2.0,
                     "a mitigation *does not touch the cause* when it moves test accuracy by less than "
                     "{threshold:g} points from the baseline")
VALIDATION_BLIND = Rule("chosen on validation", 0.0,
                        "the *recommended* mitigation is the validation winner (highest validation "
                        "accuracy); test data never chooses. When the diagnosis names a cause in how "
                        "test differs from train (a suspect feature or a prior shift) and the "
                        "validation–test gap is outside noise (or test has no labels), the mitigation "
                        "that answers the verdict's primary kind is reported beside it as the "
                        "*diagnosis's fix*, with its measured effect on test: the validation split is cut "
                        "from the training file and shares its distribution, so it cannot rank that fix")
ROOT_CAUSE = Rule("root cause", 0.99,
                  "a named cause is called the *root cause* only when the validation–test gap is outside "
                  "noise and the mitigation that removes or corrects it measurably closes it: the lower "
                  "end of the {points:s}% interval of its paired test-accuracy gain over the baseline "
                  "is above 0")
_Z99 = NormalDist().inv_cdf(0.5 + ROOT_CAUSE.threshold / 2)   # two-sided quantile at ROOT_CAUSE's level (2.576)


@dataclass(frozen=True, eq=False)
class Trained:
    """A row of ``mitigations.MITIGATIONS`` as trained for this run: the planned row
    (``mitigations.Planned``: the row, the features it acts on, the verdict kinds it
    answers), the encoded splits it was trained and scored on, its ``mlp.MLP`` options,
    the future of its ``Fitted`` network (already done when replayed or not trained)."""
    planned: Any
    data: dict
    params: dict
    source: Any
    replayed: bool = False
    weights: Any = None         # ``mitigations.RowWeights`` of a ``Prepare.WEIGHTS`` row, else None

    @property
    def name(self):
        return self.planned.name

    @property
    def answers(self):
        return self.planned.kinds

    @property
    def drops(self):
        """The features removed from the data (the ``drop_features`` row), else ()."""
        return self.planned.features if self.planned.mitigation.name == "drop_features" else ()


def _done(value):
    """A finished future holding ``value``."""
    fut = Future()
    fut.set_result(value)
    return fut


def _needs_val(params):
    """Part D scores each mitigation on validation once, after training; only early
    stopping needs the validation loss at every iteration."""
    return bool(params.get("early_stopping"))


def _same_encoding(ctx, encode):
    """Whether ``prep.encode`` with the options ``encode`` would give the run's own matrices
    (then the row trains on them instead of a second copy): missing-value indicators add
    no column when no feature of the fitting split has a missing value."""
    options = dict(encode)
    if set(options) - {"missing_indicators"}:
        return False
    if not options.get("missing_indicators"):
        return True
    ds, rows = ctx.dataset, ctx.data.train_rows
    return not any(ds.train[c].isna().to_numpy()[rows].any()
                   for c in list(ds.numeric) + list(ds.categorical))


def weighted_fit_job(label, params, data, weights, validate):
    """One training with per-row weights ``weights`` (shape (n_train,), ``MLP.fit``'s
    ``sample_weight``) and its ``evaluate`` scores (in a worker): a ``Fitted``."""
    from training import _progress
    model = mlp.MLP(**params)
    model.fit(data.X_train, data.y_train, data.X_val if validate else None, data.y_val if validate else None,
              progress=_progress(label, params["n_iter"]), sample_weight=weights)
    return Fitted(model, evaluate(model, data))


def mitigations_step(ctx, networks, diagnosis):
    """Step ``D.mitigations``: queue the trainings of Part D's mitigations of the diagnosed
    network, one per row that ``mitigations.plan`` gives for the verdict (those answering
    it, then the general options); a list of ``Trained``.

    Each row is prepared by its ``mitigations.Prepare``: options retrain on the run's
    data, changed data is encoded afresh, a post-hoc correction wraps the baseline
    (nothing trained), row weights are computed here from the encoded training and test
    features (never test labels) and the row retrains with them. A row with ``replay`` is not trained again when the baseline's
    own training record gives its exact result.
    """
    cfg, act = ctx.cfg, diagnosis.network
    baseline = networks[act].model
    out = []
    for planned in mitigations.plan(diagnosis.result):
        m = planned.mitigation
        params, data = m.options, ctx.data
        if m.prepare is mitigations.Prepare.DATA and not (m.make is None and _same_encoding(ctx, m.encode)):
            dataset = ctx.dataset if m.make is None else m.make(ctx.dataset, planned.features, cfg.seed)
            data = prep.encode(dataset, val_size=cfg.val_size, seed=cfg.seed, **dict(m.encode))
        elif m.prepare is mitigations.Prepare.POST_HOC:
            y = ctx.data.y_train
            model = m.make(baseline, np.bincount(y, minlength=len(ctx.dataset.classes)) / len(y))
            out.append(Trained(planned, data, params, _done(Fitted(model, evaluate(model, data)))))
            continue
        weights = None
        if m.prepare is mitigations.Prepare.WEIGHTS:     # from train's and test's features, never test labels
            weights = m.make(data.X_train, data.X_test, cfg.seed)
        replay = m.replay(baseline, params) if m.replay is not None else None
        if replay is not None:
            scores = evaluate(replay, worker_arrays(data, replay.get_params()))
            out.append(Trained(planned, data, params, _done(Fitted(replay, scores)), replayed=True))
            continue
        validate = _needs_val(params)
        kw = fit_params(cfg, activation=act, **params)
        name = planned.name
        key = ("fit", f"{act} {name}", validate, tuple(sorted(kw.items())))
        if weights is None:
            fut = ctx.jobs.submit(key, fit_scored_job, f"{act} {name}", kw, worker_arrays(data, kw), validate,
                                  priority=JOB_PRIORITY, group="D")
        else:
            fut = ctx.jobs.submit(key + ("weighted",), weighted_fit_job, f"{act} {name}", kw, worker_arrays(data, kw),
                                  weights.weights, validate, priority=JOB_PRIORITY, group="D")
        out.append(Trained(planned, data, params, fut, weights=weights))
    return out


def _combination_job(*options, rows, base_f1, suspects, act, cfg_params, data):
    """Part D's combined mitigation (in a worker): removing the dropped suspects plus every
    combinable row (data unchanged; ``options``: their ``Fitted``, ``rows``: their
    ``mitigations.Mitigation``) whose network has a higher validation macro-F1 than the
    baseline (``base_f1``), options merged by ``mitigations.merge_options``; chosen on
    validation data only. ``(name, params, Fitted)``, or None when there is nothing to
    combine (no dropped suspect and at most one helpful option)."""
    helpful = [m for m, f in zip(rows, options) if f.scores["val"]["macro_f1"] > base_f1]
    params, used = mitigations.merge_options(helpful)
    if not (suspects or len(used) > 1):
        return None
    name = "combination: " + " + ".join(([f"remove {', '.join(suspects)}"] if suspects else [])
                                         + [m.row_name() for m in used])
    kw = dict(cfg_params, activation=act, **params)
    return name, params, fit_scored_job(f"{act} {name}", kw, data, _needs_val(params))


def combination_after(ctx, networks, diagnosis, trained):
    """Step ``D.combination``: queue ``_combination_job`` to run when the combinable rows
    of ``trained`` have finished; its future."""
    options = [t for t in trained if t.planned.mitigation.combinable]
    removal = [t for t in trained if t.drops]
    act = diagnosis.network
    return ctx.jobs.after(("combination", act), [t.source for t in options], _combination_job,
                          rows=[t.planned.mitigation for t in options],
                          base_f1=networks[act].scores["val"]["macro_f1"],
                          suspects=list(removal[0].drops) if removal else [],
                          act=act, cfg_params=fit_params(ctx.cfg),
                          data=worker_arrays(removal[0].data if removal else ctx.data, fit_params(ctx.cfg)),
                          priority=JOB_PRIORITY,
                          group="D")


def _paired_gain(pred, base_pred, y, z=_Z99):
    """Test-accuracy gain of ``pred`` over ``base_pred`` on the same rows with its two-sided
    interval (normal approximation to the paired binomial difference): (gain, lo, hi)."""
    diff = (pred == y).astype(float) - (base_pred == y).astype(float)     # (n,) in {-1, 0, 1}
    g = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    return g, g - z * se, g + z * se


def recommend(rows):
    """``VALIDATION_BLIND``: the index of the recommended mitigation row, the validation
    winner. ``rows``: Part D's mitigation rows (row 0 the baseline). Reads validation
    scores only, never a test score."""
    return max(range(len(rows)), key=lambda i: rows[i]["val_acc"])


def diagnosis_fix(rows, result, labelled):
    """``VALIDATION_BLIND``'s second half: the index of the row that answers the verdict's
    primary kind (``rows[i]["answers"]``), when the diagnosis names a cause and the gap is
    outside noise (or test has no labels); else None. Reads no mitigation's test score."""
    gap = result.gap
    beyond = (not labelled) or (gap is not None and gap.outside_noise)
    named = bool(result.suspects) or "prior_shift" in result.verdict.kinds
    if named and beyond:
        for kind in result.verdict.kinds:
            for i, r in enumerate(rows):
                if kind in r["answers"]:
                    return i
    return None


@dataclass(frozen=True, eq=False)
class DResult(PartResult):
    """Part D: test accuracy, per-class results, attribution on train vs test, the shift
    diagnosis and the measured mitigations of Part B's best network (``network``).

    ``mitigations`` rows: name, answers (verdict kinds), val/test accuracy and macro-F1
    (test None without test labels), iterations, and for rows answering the verdict the
    paired test-accuracy gain over the baseline with its 99% interval; the first row is
    the baseline. ``by_val`` indexes the validation winner, which ``VALIDATION_BLIND``
    recommends (``recommended``, ``reason`` "validation"), ``fix`` the row that answers the
    verdict (None when the diagnosis names no cause beyond noise);
    ``touches_cause[i]`` applies ``TOUCHES_CAUSE``. ``labelled``: test has labels.
    ``performance``: the test accuracy estimated without test labels and (labelled) the
    validation -> test change in terms (``Performance``; None with ``performance_skipped``
    saying why); ``weighting``: the weights of each importance-weighted row.
    """
    network: str
    labels: list
    labelled: bool
    accuracy_rows: list         # per network: accuracies per split and the gaps
    split_accuracy: dict        # network -> split -> accuracy (test None without labels)
    base_test: Any              # test accuracy of always predicting the training majority class
    per_class: Any              # DataFrame
    classification_report: Any  # dict, None without test labels
    confusion: Any              # ndarray (n_classes, n_classes), rows: true class; None without labels
    predicted_shares: list      # share of test rows predicted as each class
    attribution_share: dict     # split -> Series of shares per original column
    diagnosis: NetworkDiagnosis
    dataset: Any                # prep.Dataset, for the suspects' figures
    mitigations: list
    params: list                # MLP options per mitigation row
    kinds: list                 # per row: its ``mitigations.MITIGATIONS`` name ("baseline", "combination")
    replayed: list              # names of mitigations replayed instead of trained
    best_iters: dict            # mitigation name -> best_iter_ (early stopping)
    by_val: int
    recommended: int
    reason: str
    fix: Any                    # index of the diagnosis's fix (answers the verdict), or None
    root_cause: bool            # ``ROOT_CAUSE`` applied to the diagnosis's fix
    touches_cause: list
    loss_fall: Any              # (fall, k, last loss) of the suspect-free network, or None
    iterations: int
    performance: Any = None     # ``Performance``: test accuracy without labels, the change's terms
    weighting: dict = None      # mitigation name -> ``mitigations.RowWeights.to_dict()`` (weighted rows)
    performance_skipped: str = ""   # why ``performance`` is None ("" when it ran)

    @property
    def suspects(self):
        return self.diagnosis.suspects

    @property
    def verdict(self):
        return self.diagnosis.result.verdict

    @property
    def accuracy(self):
        acc = {a: dict(s) for a, s in self.split_accuracy.items()}
        for i in dict.fromkeys((self.recommended, self.fix)):
            if i:
                row = self.mitigations[i]
                acc[f"{self.network} ({rp.literal(row['name'])})"] = {"val": row["val_acc"], "test": row["test_acc"]}
        return acc

    @property
    def summary_sentences(self):
        """One or two plain sentences from the diagnosis and the measured mitigation."""
        res = self.diagnosis.result
        out = [_verdict_sentence(res)]
        g = res.gap
        rec = None if self.fix is None else self.mitigations[self.fix]
        if g is not None:
            lo, hi = g.accuracy_ci
            s = (f"Accuracy {verb_for(-g.accuracy_gap, 'rises', 'falls')} from {g.val_accuracy:.3f} on "
                 f"validation to {g.test_accuracy:.3f} on test (gap {g.accuracy_gap:+.3f}, 99% CI "
                 f"{lo:+.3f} to {hi:+.3f}, {'outside' if g.outside_noise else 'within'} noise)")
            if rec is not None and rec.get("gain") is not None:
                s += (f"; {rp.literal(rec['name'])} {verb_for(rec['gain'], 'raises', 'lowers')} test accuracy by "
                      f"{abs(rec['gain']) * 100:.1f} points (99% CI {rec['gain_lo'] * 100:+.1f} to "
                      f"{rec['gain_hi'] * 100:+.1f})"
                      + (f", so the root cause is {_cause_words(res)}" if self.root_cause else
                         ", not measurably, so no root cause is claimed"))
            out.append(s + ".")
        else:
            out.append("Test has no labels, so only the label-free checks ran.")
        return out

    @property
    def performance_sentences(self):
        """The accuracy estimate without test labels and, with labels, the decomposition of the
        validation -> test change of accuracy and how far the estimate was off: one sentence each."""
        p = self.performance
        if p is None:
            return []
        if p.change is None:
            return [p.estimate.sentence()]
        return [p.change.accuracy.sentence(), p.check_sentence()]

    @property
    def headline(self):
        a, rec = self.split_accuracy[self.network], self.mitigations[self.recommended]
        test = "unlabelled" if a["test"] is None else f"{a['test']:.3f}"
        if a["test"] is None and self.performance is not None:
            test += f" (estimated {self.performance.estimate.estimate:.3f})"
        fix = "" if self.fix is None else f"; the diagnosis's fix: {rp.literal(self.mitigations[self.fix]['name'])}"
        return (f"test {test} vs val {a['val']:.3f}; verdict {self.verdict.kind}; suspects: "
                f"{', '.join(self.suspects) or 'none'}; recommended on validation: {rp.literal(rec['name'])}{fix}")

    def to_metrics(self):
        j = prep.to_jsonable
        a = self.split_accuracy[self.network]
        d = self.diagnosis.result.to_dict()
        rec = self.mitigations[self.recommended]
        return {"train_acc": a["train"], "val_acc": a["val"], "test_acc": a["test"], "network": self.network,
                "test_labelled": self.labelled, "accuracy": self.accuracy, "per_class": j(self.per_class),
                "classification_report": j(self.classification_report),
                "confusion_matrix": None if self.confusion is None else self.confusion.tolist(),
                "predicted_shares": dict(zip(self.labels, self.predicted_shares)),
                "verdict": d["verdict"], "suspect_features": self.suspects, "diagnosis": d,
                "diagnosis_seconds": self.diagnosis.seconds, "summary": self.summary_sentences,
                "drift": d["evidence"], "model_importance": self.diagnosis.importance,
                "mitigations": self.mitigations, "validation_winner": self.mitigations[self.by_val]["name"],
                "recommended": {"name": rec["name"], "reason": self.reason, "rule": VALIDATION_BLIND.description,
                                "val_acc": rec["val_acc"], "test_acc": rec["test_acc"],
                                "test_macro_f1": rec["test_macro_f1"]},
                "diagnosis_fix": None if self.fix is None else {
                    k: self.mitigations[self.fix][k] for k in ("name", "answers", "val_acc", "test_acc",
                                                               "test_macro_f1", "gain", "gain_lo", "gain_hi")}
                | {"root_cause": self.root_cause},
                "headline": self.headline,
                "sample": None if self.diagnosis.sample is None else self.diagnosis.sample.to_dict(),
                "performance": ({"skipped": self.performance_skipped} if self.performance is None
                                else self.performance.to_dict()),
                "performance_summary": self.performance_sentences, "importance_weighting": self.weighting or {}}


# What a suspect's mechanism means, per verdict kind (sentences are built from it).
def _cause_words(res):
    """The diagnosed cause in words: the suspects with their mechanism, or the prior shift."""
    if res.suspects:
        return ", ".join(f"{rp.literal(s.feature, code=True)} ({s.kind})" for s in res.suspects)
    return "the shift of the class shares (prior_shift)"


def _verdict_sentence(res):
    """The verdict in one sentence: ``shift.verdict_sentence`` (one clause per kind, none
    contradicting another), column names as code spans."""
    return shift.verdict_sentence(res, name=lambda c: rp.literal(c, code=True))


def compute(ctx):
    """Part D's numbers for Part B's best network: accuracy per split, per-class results,
    attribution on train vs test, the diagnosis (step ``D.diagnosis``) and the mitigations
    (jobs of the steps ``D.mitigations`` and ``D.combination``). Without test labels the
    test scores are None and the test attribution uses the predicted classes."""

    cfg, d, ds, plan = ctx.cfg, ctx.data, ctx.dataset, ctx.plan
    labelled = d.y_test is not None
    b = ctx.results["B"]
    nets, evals = b.networks, b.scores
    labels = [prep.label_text(c).strip("'") for c in ds.classes]
    rows, acc = [], {}

    def diff(a, b_):
        return None if a is None or b_ is None else a - b_

    for act, ev in evals.items():
        acc[act] = {s: ev[s]["acc"] for s in ev}
        rows.append({"network": act, "train": ev["train"]["acc"], "validation": ev["val"]["acc"],
                     "test": ev["test"]["acc"], "train − test": diff(ev["train"]["acc"], ev["test"]["acc"]),
                     "validation − test": diff(ev["val"]["acc"], ev["test"]["acc"]),
                     "test macro-F1": ev["test"]["macro_f1"]})
    act = b.best
    model = nets[act]
    majority = np.bincount(d.y_train).argmax()
    base_test = float(np.mean(d.y_test == majority)) if labelled else None
    per_class = pd.DataFrame({"class": labels})
    for split in ("train", "val", "test"):
        y, p = d.y(split), evals[act][split]["pred"]
        if y is None:
            per_class["test predicted n"] = np.bincount(p, minlength=len(labels))
            continue
        per_class[f"{split} recall"] = [float(np.mean(p[y == k] == k)) if np.any(y == k) else np.nan
                                        for k in range(len(labels))]
        per_class[f"{split} n"] = np.bincount(y, minlength=len(labels))
    p_test = evals[act]["test"]["pred"]
    shares = (np.bincount(p_test, minlength=len(labels)) / len(p_test)).tolist()
    rep = cm = None
    if labelled:
        rep = classification_report(d.y_test, p_test, labels=range(len(labels)), target_names=labels,
                                    output_dict=True, zero_division=0)
        cm = confusion_matrix(d.y_test, p_test, labels=range(len(labels)))

    names, source = list(d.feature_names), list(d.feature_source)
    share = {}
    for split in ("train", "test"):
        y = d.y(split) if d.y(split) is not None else p_test    # unlabelled: predicted classes
        res = mlp.feature_attribution(model.weights_, model.biases_, d.X(split), y,
                                      act, target="output", samples="all", feature_names=names,
                                      feature_source=source)
        share[split] = res["by_source"].set_index("feature")["share"]

    diag = plan.d_diagnosis.result()
    # the accuracy estimate and the decomposition on the diagnosis's rows, while the workers train
    val_pos = d.val_rows
    sample = diag.sample if diag.sample is not None else row_sample(ds, cfg.seed, limit=max(len(ds.train), len(ds.test)))
    val_keep = np.isin(val_pos, sample.train_rows)
    perf, perf_skipped = None, ""
    if min(int(val_keep.sum()), len(sample.test_rows)) >= MIN_ESTIMATE_ROWS:
        perf = estimate_performance(model, d, val_keep, sample.test_rows, cfg.seed)
    else:
        perf_skipped = (f"the accuracy estimate without test labels and the decomposition of the change need "
                        f"at least {MIN_ESTIMATE_ROWS} validation and test rows; here {int(val_keep.sum())} and "
                        f"{len(sample.test_rows)}")
    results, params, kinds, replayed, best_iters, models = [], [], [], [], {}, {}
    base_pred = p_test

    def record(name, fitted, p, kind, answers=()):
        models[name] = fitted.model
        kinds.append(kind)
        s = fitted.scores
        row = {"name": name, "answers": list(answers), "val_acc": s["val"]["acc"],
               "val_macro_f1": s["val"]["macro_f1"], "test_acc": s["test"]["acc"],
               "test_macro_f1": s["test"]["macro_f1"], "iterations": fitted.model.n_iter_,
               "gain": None, "gain_lo": None, "gain_hi": None}
        if labelled and answers:
            row["gain"], row["gain_lo"], row["gain_hi"] = _paired_gain(s["test"]["pred"], base_pred, d.y_test)
        results.append(row)
        params.append(p)
        if p.get("early_stopping"):
            best_iters[name] = fitted.model.best_iter_

    record("baseline", Fitted(model, evals[act]), {}, "baseline")
    weighting = {}
    removal = None
    for m in plan.d_mitigations.result():
        if m.replayed:
            replayed.append(m.name)
        record(m.name, m.source.result(), m.params, m.planned.mitigation.name, m.answers)
        if m.weights is not None:
            weighting[m.name] = m.weights.to_dict()
        if m.drops and removal is None:
            removal = m.name
    combo = plan.d_combination.result().result()
    if combo:
        name, combo_params, fitted = combo
        record(name, fitted, combo_params, "combination")
    by_val = recommended = recommend(results)      # VALIDATION_BLIND: the validation winner
    reason = "validation"
    fix, g = diagnosis_fix(results, diag.result, labelled), diag.result.gap
    root = bool(fix is not None and g is not None and g.outside_noise and results[fix]["gain_lo"] is not None
                and results[fix]["gain_lo"] > 0)
    base = results[0]
    touches = [labelled and abs((res["test_acc"] - base["test_acc"]) * 100) >= TOUCHES_CAUSE.threshold
               for res in results]
    loss_fall = None
    if removal is not None:
        loss_fall = falling(models[removal].history_["loss"])
    return DResult(network=act, labels=labels, labelled=labelled, accuracy_rows=rows, split_accuracy=acc,
                   base_test=base_test, per_class=per_class, classification_report=rep, confusion=cm,
                   predicted_shares=shares, attribution_share=share, diagnosis=diag, dataset=ds,
                   mitigations=results, params=params, kinds=kinds, replayed=replayed, best_iters=best_iters,
                   by_val=by_val, recommended=recommended, reason=reason, fix=fix, root_cause=root,
                   touches_cause=touches, loss_fall=loss_fall, iterations=cfg.iterations, performance=perf,
                   weighting=weighting, performance_skipped=perf_skipped)


# The evidence columns Part D's table shows (those ``shift.diagnose`` filled), in order.
EVIDENCE_COLUMNS = ("shift_test", "shift_effect", "shifted", "gap_fitted", "gap_reweighted", "gap_band",
                    "info_train", "info_test", "pps_train", "pps_test", "missing_train", "missing_test",
                    "missing_tv_train", "missing_tv_test", "adv_auc_drop")


def _fired_rules_table(rules):
    """The rules that fired: one row each (rule, subject, value, threshold, noise band)."""
    return [{"rule": r.name, "subject": r.subject or "", "value": r.value, "threshold": r.threshold,
             "noise band": r.noise_band} for r in rules if r.fired]


def render(res, out):
    """Part D's tables (tables/d_*.csv), figures (figures/d_*.png) and report section; every
    sentence is written from the result's numbers (``shift.explain`` for the diagnosis)."""

    r, act, ds = out.report, res.network, res.dataset
    diag = res.diagnosis.result
    a = res.split_accuracy[act]
    banner = prep.split_banner(ds)
    if banner:
        r.banner(banner)
    r.heading("Test accuracy", 3)
    out.save_table(pd.DataFrame(res.accuracy_rows), "d_accuracy", caption="Accuracy per split and the gaps",
                   floatfmt=".4f")
    if res.labelled:
        gap = (a["val"] - a["test"]) * 100
        r.para(f"The {rp.literal(act, code=True)} network (best validation accuracy) scores {a['train']:.4f} on the training "
               f"split, {a['val']:.4f} on validation and **{a['test']:.4f} on test**: "
               f"{abs(gap):.1f} points {'below' if gap > 0 else 'above'} validation; always predicting the "
               f"training majority class scores {res.base_test:.4f} on test.")
    else:
        r.para(as_sentence(data_notes(ds)[-1]) + " The `" + act +
               f"` network (best validation accuracy) scores {a['train']:.4f} on the training split and "
               f"{a['val']:.4f} on validation; the share of test rows it labels as each class is "
               + ", ".join(f"{c}: {s:.3f}" for c, s in zip(res.labels, res.predicted_shares)) + ".")
    out.save_table(res.per_class, "d_per_class", caption=f"{rp.literal(act, code=True)}: per-class accuracy (recall) per split",
                   floatfmt=".3f")
    if res.labelled:
        out.save_table(pd.DataFrame(res.classification_report).T.reset_index(names="class"),
                       "d_classification_report",
                       caption=f"{rp.literal(act, code=True)}: scikit-learn classification report on test", floatfmt=".3f")
        out.save_figure(plots.confusion(res.confusion, res.labels), "d_confusion_test.png",
                        f"{rp.literal(act, code=True)}: confusion matrix on test (rows: true class)")

    r.heading("Attribution on train and on test", 3)
    att = res.attribution_share
    side = pd.DataFrame({"train share": att["train"], "test share": att["test"]})
    side = side.sort_values("train share", ascending=False).reset_index()
    out.save_table(side, "d_attribution_train_test", floatfmt=".3f",
                   caption=f"{rp.literal(act, code=True)}: share of mean |∂o_m/∂x| per original column, all samples of each split"
                           + ("" if res.labelled else " (test: m = the predicted class, test has no labels)"))

    r.heading("Diagnosis: what changed between train and test", 3)
    r.para(f"The diagnosis (`shift.diagnose`, with the {rp.literal(act, code=True)} network on the run's validation split) took "
           f"{diag.seconds:.1f} s. Verdict: **{diag.verdict.kind}** (all kinds that hold: "
           f"{', '.join(diag.verdict.kinds)}); suspects: "
           + (", ".join(f"{rp.literal(s.feature, code=True)} ({s.kind})" for s in diag.suspects) or "none") + ".")
    if res.diagnosis.sample is not None and res.diagnosis.sample.sampled:
        r.para(res.diagnosis.sample.sentence())
    r.bullets([rp.literal(s) for s in shift.explain(diag)])   # plain sentences naming data
    if diag.skipped:
        r.para("Checks that need test labels, skipped here: " + "; ".join(diag.skipped) + ".")
    ev = diag.evidence.copy()
    for split, imp in res.diagnosis.importance.items():
        ev[f"net_perm_{split}"] = ev.index.map(imp)
    cols = [c for c in EVIDENCE_COLUMNS if c in ev.columns] + [c for c in ev.columns if c.startswith("net_perm_")]
    out.save_table(ev[cols].reset_index(), "d_evidence", floatfmt=".3f",
                   caption="Evidence per feature: shift of the inputs (KS or Cramér's V), the train-fitted "
                           "P(label | feature) against its refit within test (log-loss gaps, nats), the "
                           "feature's information about the label in train and within test, pps (descriptive), "
                           "missingness, adversarial-validation importance and the network's permutation "
                           "importance per split (descriptive)")
    out.save_table(ev.reset_index(), "d_evidence_full", show=False)
    fired = _fired_rules_table(diag.rules)
    if fired:
        out.save_table(pd.DataFrame(fired), "d_rules_fired", floatfmt=".4g",
                       caption="The diagnosis rules that fired (every rule applied is in tables/d_rules.csv)")
    out.save_table(pd.DataFrame([dict(r_.__dict__, description=r_.description) for r_ in diag.rules]),
                   "d_rules", show=False)
    seen = list(dict.fromkeys(r_.name for r_ in diag.rules if r_.fired))     # each fired rule once, in order
    if seen:
        r.bullets([f"Rule {rp.literal(n, code=True)}: {shift.RULES[n].statistic}; threshold {shift.RULES[n].threshold:g} "
                   f"({shift.RULES[n].noise}); when it fires: {shift.RULES[n].description}." for n in seen])
    if res.labelled:
        for s in diag.suspects:
            f = s.feature
            fig = plots.feature_by_class_per_split({"train": ds.train, "test": ds.test}, f, ds.target,
                                                   numeric=f in ds.numeric)
            out.save_figure(fig, f"d_suspect_{_slug(f)}.png", f"{rp.literal(f, code=True)} against the label in the training file and in the test file")

    if res.performance is not None:
        _render_performance(res, out)
    elif res.performance_skipped:
        r.para(as_sentence(f"Not estimated: {res.performance_skipped}"))

    r.heading("Mitigations", 3)
    results = res.mitigations
    table = pd.DataFrame(results)
    table["answers"] = table["answers"].map(lambda k: ", ".join(k))
    out.save_table(table, "d_mitigations", floatfmt=".4f",
                   caption=f"{rp.literal(act, code=True)} networks trained from the same seed with each mitigation (answers: the "
                           "verdict kind a mitigation follows from; gain: paired test-accuracy gain over the "
                           "baseline with its 99% interval)")
    if res.labelled:
        out.save_figure(plots.grouped_bars(table.set_index("name")[["val_acc", "test_acc"]],
                                           "Validation vs test accuracy per mitigation", "accuracy"),
                        "d_mitigations.png", "Validation and test accuracy per mitigation")
    r.bullets(_mitigation_lines(res))

    r.heading(_why_heading(res), 3)
    r.bullets(_why_lines(res))


def _render_performance(res, out):
    """The accuracy estimate without test labels and the decomposition of the change: a
    paragraph of sentences generated from the numbers, a table and one figure."""
    r, p, act = out.report, res.performance, res.network
    e = p.estimate
    r.heading("Test accuracy without test labels" + ("" if p.change is None else ", and what the change is made of"), 3)
    lines = [e.sentence()]
    if p.change is not None:
        lines.append(p.check_sentence(after_estimate=True))
        lines += list(p.change.sentences())
        lines.append(f"The terms come from one domain classifier telling validation rows from test rows by "
                     f"their inputs and the network's log probabilities (ROC AUC {p.change.ratio.auc:.3f}; 0.5: "
                     f"indistinguishable); test rows it finds over {p.change.ratio.threshold:g} times more often "
                     f"than in train count as unseen; intervals: {100 * p.change.accuracy.level:g}%, rows "
                     f"bootstrapped and the classifier refitted {p.change.accuracy.n_refit} times.")
    lines.append(f"Rows used: {p.n_val:,} validation and {p.n_test:,} test rows; {p.seconds:.1f} s.")
    r.bullets([rp.literal(line) for line in lines])
    if p.change is None:
        return
    dec = p.change.accuracy
    terms = [getattr(dec, t) for t in DECOMPOSITION_TERMS]
    table = pd.DataFrame({"term": [TERM_TEXT[t] for t in DECOMPOSITION_TERMS],
                          "accuracy change (points)": [100 * t.value for t in terms],
                          "low": [100 * t.low for t in terms], "high": [100 * t.high for t in terms],
                          "log-loss change (nats)": [getattr(p.change.log_loss, t).value for t in DECOMPOSITION_TERMS]})
    out.save_table(table, "d_decomposition", floatfmt=".2f",
                   caption=f"{rp.literal(act, code=True)}: the validation → test change of accuracy (points, with "
                           f"its {100 * dec.level:g}% interval) and of log loss, split into additive terms")
    out.save_figure(plots.interval_bars([TERM_TEXT[t] for t in DECOMPOSITION_TERMS],
                                        [100 * t.value for t in terms], [100 * t.low for t in terms],
                                        [100 * t.high for t in terms],
                                        f"Validation → test change in accuracy of {act}, by term",
                                        f"change in accuracy (points; bars: {100 * dec.level:g}% interval)",
                                        first_is_total=True),
                    "d_decomposition.png", f"{rp.literal(act, code=True)}: the validation → test change of accuracy "
                                           "split into covariate, conditional and unseen terms")


def _mitigation_lines(res):
    """The mitigation bullets, from the rows, the rule and the diagnosis."""
    rows, base = res.mitigations, res.mitigations[0]
    rec, win = rows[res.recommended], rows[res.by_val]
    lines = [f"Recommended: **{rp.literal(win['name'])}**, the validation winner ({win['val_acc']:.4f} "
             "validation accuracy)" + (": no mitigation beats the unmitigated network on validation."
                                       if res.by_val == 0 else ".")]
    if res.fix is not None:
        fix = rows[res.fix]
        lines.append(f"The diagnosis's fix: **{rp.literal(fix['name'])}**, the mitigation that answers the verdict "
                     f"({', '.join(fix['answers'])})" + (
                         f"; validation scores it {fix['val_acc']:.4f} against {win['val_acc']:.4f} for "
                         f"**{rp.literal(win['name'])}**: validation, cut from the training file, shares its "
                         "distribution and cannot rank a fix for how test differs from train, so this "
                         "row is reported with its measured effect, not chosen."
                         if res.fix != res.by_val else ", and validation ranks it first too."))
    if res.labelled:
        top = max(range(len(rows)), key=lambda i: rows[i]["test_acc"])
        lines.append((f"Its test accuracy is {rec['test_acc']:.4f} (macro-F1 {rec['test_macro_f1']:.4f}) against "
                      f"{base['test_acc']:.4f} ({base['test_macro_f1']:.4f}) for the baseline" if res.recommended else
                      f"The unmitigated network's test accuracy is {base['test_acc']:.4f} (macro-F1 "
                      f"{base['test_macro_f1']:.4f})")
                     + (f"; test does not agree: the highest test "
                        f"accuracy is {rows[top]['test_acc']:.4f} ({rp.literal(rows[top]['name'])}), reported only, "
                        "never used to choose." if top != res.recommended else "; test agrees: no row does "
                                                                                "better on test."))
        f1 = max(range(len(rows)), key=lambda i: rows[i]["test_macro_f1"])
        if f1 not in (top, res.recommended) and rows[f1]["test_acc"] < rows[top]["test_acc"]:
            lines.append(f"The highest test macro-F1, {rows[f1]['test_macro_f1']:.4f}, is "
                         f"{rp.literal(rows[f1]['name'])}'s (test accuracy {rows[f1]['test_acc']:.4f}; "
                         f"{rows[top]['test_macro_f1']:.4f} for {rp.literal(rows[top]['name'])}): it trades "
                         "accuracy on the large classes for the small ones; reported only, never used to choose.")
        for i, row in enumerate(rows):
            if row["gain"] is None:
                continue
            lines.append(f"{rp.literal(row['name'])} (answers {', '.join(row['answers'])}): it "
                         f"{verb_for(row['gain'], 'raises', 'lowers')} test accuracy by "
                         f"{abs(row['gain']) * 100:.1f} points (99% CI {row['gain_lo'] * 100:+.1f} to "
                         f"{row['gain_hi'] * 100:+.1f} points, paired over the test rows)"
                         + (", measurably." if row["gain_lo"] > 0 or row["gain_hi"] < 0 else ", within noise."))
        if "missingness" in res.verdict.kinds:
            ind = next((row for row, k in zip(rows, res.kinds) if k == "missing_indicators"), None)
            if ind is not None:
                delta = (ind["test_acc"] - base["test_acc"]) * 100
                lines.append("Missing-value indicator columns hand the network the train-only missingness "
                             f"signal, which can make a missingness case worse; here they "
                             f"{verb_for(delta, 'raise', 'lower')} test accuracy by {abs(delta):.1f} points.")
        for i, row in enumerate(rows[1:], 1):
            delta = (row["test_acc"] - base["test_acc"]) * 100
            note, p = "", res.params[i]
            if p.get("early_stopping"):
                note = (f" (stopped at iteration {row['iterations']})" if row["iterations"] < res.iterations
                        else f" (never triggered; the iterate with the lowest validation loss, "
                             f"{res.best_iters[row['name']] + 1}, is kept"
                             + (", replayed from the baseline's validation record)" if row["name"] in res.replayed
                                else ")"))
            lines.append(f"{rp.literal(row['name'])}: validation {row['val_acc']:.4f}, test {row['test_acc']:.4f} "
                         f"({delta:+.1f} points), test macro-F1 {row['test_macro_f1']:.4f}{note}"
                         + ("." if res.touches_cause[i] or not _has_cause(res)
                            else " — it does not touch the cause."))
        if _has_cause(res):
            lines.append(f"Rule: {TOUCHES_CAUSE.description}.")
            lines.append(f"Rule: {ROOT_CAUSE.description}.")
    else:
        lines.append("Test has no labels, so no mitigation's test accuracy can be measured; the table "
                     "gives validation scores only.")
    for name, w in (res.weighting or {}).items():
        lines.append(f"{rp.literal(name)}: each training row weighted by p_test(x)/p_train(x) from a classifier "
                     f"telling training rows from test rows by their features (ROC AUC {w['domain_auc']:.3f}; each "
                     f"row's weight from a fit that did not see it; no test labels), capped at {w['clip']:g} times "
                     f"the mean ({100 * w['clipped_share']:.1f}% of rows capped) and rescaled to mean 1: "
                     f"{w['effective_rows']:,.0f} effective training rows of {w['rows']:,}. Like every row it is "
                     "chosen or not by its plain validation accuracy (validation, cut from the training file, "
                     "has train's inputs, so it cannot rank a correction toward test's).")
    lines.append(f"Rule: {VALIDATION_BLIND.description}.")
    return lines


def _has_cause(res):
    """The diagnosis named a cause in how test differs from train: a suspect feature or a
    prior shift (what "touching the cause" can refer to)."""
    return bool(res.diagnosis.result.suspects) or "prior_shift" in res.verdict.kinds


def _why_heading(res):
    """The heading of the "why" section, from the numbers: a failure only when test has
    labels and the validation-test gap is outside noise."""
    g = res.diagnosis.result.gap
    if not res.labelled:
        return "What can be said about test without its labels"
    if g is not None and g.outside_noise:
        return "Why it does well in training and fails on test"
    return "Training and test: no gap beyond noise"


def _why_lines(res):
    """Why the network does well in training and fails on test, from the diagnosis numbers."""
    diag, att = res.diagnosis.result, res.attribution_share
    a = res.split_accuracy[res.network]
    lines = list(res.summary_sentences)
    ev, imp = diag.evidence, res.diagnosis.importance
    for s in diag.suspects:
        f, e = s.feature, ev.loc[s.feature]
        text = f"{rp.literal(f, code=True)} ({s.kind}) carries {att['train'].get(f, float('nan')):.0%} of the network's input " \
               f"sensitivity on train and {att['test'].get(f, float('nan')):.0%} on test"
        if "train" in imp and "test" in imp:
            d_imp = imp["test"].get(f, float("nan")) - imp["train"].get(f, float("nan"))
            text += (f"; shuffling it costs {imp['train'].get(f, float('nan')):.3f} accuracy on train and "
                     f"{imp['test'].get(f, float('nan')):.3f} on test (importance {verb_for(d_imp, 'rises', 'falls')})")
        if "info_train" in e and "info_test" in e and s.kind != "missingness":
            text += (f"; it carries {e['info_train']:.3f} nats about the label in train and "
                     f"{e['info_test']:.3f} within test")
        lines.append(text + ".")
    if diag.suspects and res.labelled:
        lines.append(f"The validation split is cut from the training file, so it shares train's relationships "
                     f"and scores {a['val']:.4f}; test, where they differ, scores {a['test']:.4f}.")
    if res.loss_fall is not None and res.labelled:
        fall, k, last = res.loss_fall
        if fall > STILL_LEARNING.threshold:
            lines.append(f"Without the dropped features the training loss is still falling at the last "
                         f"iteration ({last:.3f}, {fall:.1%} lower than {k} iterations earlier; "
                         f"{STILL_LEARNING.description}): more iterations may change its accuracy.")
    return lines


def verdict_sentences(d):
    """Part D's verdict in one or two plain sentences, each ending with a full stop:
    the result's own ``summary_sentences`` (``DResult`` builds them from the diagnosis).

    Parameters
    ----------
    d : Part D's result, or None when it did not run

    Returns
    -------
    list of str
    """
    if d is None:
        return ["Part D did not run, so there is no diagnosis."]
    own = d.summary_sentences
    return [s for s in map(as_sentence, [own] if isinstance(own, str) else own) if s] or \
        ["Part D reported no diagnosis."]


def performance_sentences(d):
    """What the summary says of the validation -> test change beside the verdict: the test
    accuracy estimated without test labels (unlabelled test), or the change split into
    covariate, conditional and unseen terms and how far that estimate was off (labelled);
    the result's own ``performance_sentences``. Empty when Part D did not run or has none.

    Parameters
    ----------
    d : Part D's result, or None

    Returns
    -------
    list of str
    """
    return [s for s in map(as_sentence, getattr(d, "performance_sentences", None) or []) if s]


def recommended_mitigation(d):
    """The mitigation the summary recommends (the validation winner, ``d.mitigations[d.by_val]``,
    row 0 being the unmitigated baseline) and the diagnosis's fix beside it, or None.

    Returns
    -------
    dict or None
        ``name``, ``val_acc``, ``test_acc`` (None without test labels),
        ``baseline_test_acc``, ``is_baseline``, ``fix`` (the diagnosis's fix row when it
        is not the recommended one, else None) and ``root_cause``.
    """
    if d is None:
        return None
    rows, i, k = d.mitigations, d.by_val, d.fix
    chosen = rows[i]
    return {"name": chosen["name"], "val_acc": chosen.get("val_acc"), "test_acc": chosen["test_acc"],
            "baseline_test_acc": rows[0]["test_acc"], "baseline_test_macro_f1": rows[0].get("test_macro_f1"),
            "majority_test_acc": getattr(d, "base_test", None), "is_baseline": i == 0,
            "fix": rows[k] if k is not None and k != i else None, "root_cause": bool(d.root_cause)}


def mitigation_sentences(m):
    if m is None:
        return ["Part D did not run, so no mitigation was measured."]
    if m.get("test_acc") is None:        # an unlabelled test file: nothing measured on test
        chosen = "none is recommended" if m["is_baseline"] else f"**{rp.literal(m['name'])}** is recommended"
        return [f"On validation {chosen}; test has no labels, so no mitigation's test accuracy is measured."]
    if m["is_baseline"]:
        out = [f"No mitigation beats the unmitigated network on validation, so none is recommended; "
               f"its test accuracy is {fmt(m['test_acc'])}."]
    else:
        out = [f"Recommended (highest validation accuracy, {fmt(m['val_acc'])}): **{rp.literal(m['name'])}**, with "
               f"test accuracy {fmt(m['test_acc'])} against {fmt(m['baseline_test_acc'])} without it "
               f"({points_text(m['test_acc'] - m['baseline_test_acc'])})."]
    f = m.get("fix")
    if f is not None and f.get("test_acc") is not None:
        ci = (f"; 99% CI {f['gain_lo'] * 100:+.1f} to {f['gain_hi'] * 100:+.1f} points"
              if f.get("gain") is not None else "")
        against = ""
        if m.get("majority_test_acc") is not None:
            against = (f", against {fmt(m['majority_test_acc'])} for always predicting the training majority "
                       f"class")
        if f.get("test_macro_f1") is not None and m.get("baseline_test_macro_f1") is not None:
            against += (f"; macro-F1 {fmt(f['test_macro_f1'])} against {fmt(m['baseline_test_macro_f1'])} "
                        "without it")
        out.append(f"The diagnosis's fix, **{rp.literal(f['name'])}**, which validation (cut from the training file) "
                   f"cannot rank, scores {fmt(f['test_acc'])} on test ({points_text(f['test_acc'] - m['baseline_test_acc'])}"
                   f"{ci}{against}): "
                   + ("the measured closure of the gap that names the root cause." if m.get("root_cause")
                      else "not a measurable closure of the gap."))
    return out
