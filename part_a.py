"""Part A: the data and its exploratory analysis.

``compute(ctx) -> AResult``: structure, missing cells, classes, the encoding,
correlated pairs, the predictive-power score of every column and the columns
screened out before training, all on the training split; ``render(result,
output)`` writes Part A's tables (``tables/a_*.csv``), figures
(``figures/a_*.png``) and report section. The part's rule (``DOMINANCE``) is
defined here and quoted by the report.
"""
from dataclasses import dataclass
from typing import Any

import numpy as np

import plots
import eda
import prep
from context import PartResult, analysis_rows, show_table
from prose import as_sentence, names_text
from rules import Rule
import report as rp


# Part A's rule for a suspiciously dominant feature (``eda.dominance`` applies it).
DOMINANCE = Rule("dominance", 2.0,
                 "a feature is *suspiciously dominant* when its pps is at least {threshold:g}× the "
                 "runner-up's and at least {min_pps:g}", also=(("min_pps", 0.3),))


@dataclass(frozen=True, eq=False)
class AResult(PartResult):
    """Part A: structure, missingness, classes, encoding, correlations, predictive power.

    Frames keep their column names as in the CSV tables; ``train`` is the
    training frame the EDA figures draw.
    """
    target: str
    numeric: list
    categorical: list
    n_train: int
    n_test: int
    n_columns: int
    structure: Any              # DataFrame, one row per column
    missing: Any                # DataFrame, one row per column (train/test missing)
    n_missing_train: int
    n_missing_columns: int
    n_missing_test: int
    only_in_train: list
    skewness: dict
    class_distribution: dict    # eda.class_distribution output
    spread: dict                # numeric column -> std before scaling
    statistics: Any             # the preprocessor's fitted statistics
    n_onehot: int
    feature_names: list
    feature_source: list
    train: Any                  # DataFrame drawn by the EDA figures
    corr: Any                   # ndarray (n_features, n_features)
    corr_threshold: float
    pairs: Any                  # DataFrame of |r| >= corr_threshold pairs
    predictive_power: Any       # DataFrame indexed by feature, sorted by pps
    dominance: dict             # eda.dominance output under DOMINANCE
    top: list                   # the three features with the highest pps
    excluded: Any = None        # DataFrame, prep.screen_columns: column, kind, rule, reason, ..., action
    predictive_note: str = None  # predictive_power's attrs["note"] (sub-sampled rows, unscored features)
    corr_n_features: int = 0    # encoded features the correlations scanned
    corr_top_k: int = 0         # of which the heatmap shows at most this many
    n_pairs_found: int = 0      # pairs with |r| >= corr_threshold (``pairs`` keeps the strongest)
    pairs_truncated: bool = False
    figure_numeric: list = ()   # the numeric columns the box plots show (highest pps first)
    figure_categorical: list = ()  # the categorical columns the count plots show
    figure_limit: int = 0       # at most this many feature columns in the figures (FIGURE_FEATURES)
    box_train: Any = None       # the rows the box plots draw: ``train``, or a seeded sample of it
    box_rows: int = 0           # len(box_train); < n_train when the box plots draw a sample
    box_seed: int = 0           # the seed of that sample (the run's)

    @property
    def headline(self):
        cd = self.class_distribution
        return (f"{self.n_train:,} rows, {self.n_missing_train:,} missing cells, majority baseline "
                f"{cd['majority_baseline_accuracy']:.3f}; top feature {self.top[0]}"
                + (" (dominant)" if self.dominance["dominant"] else ""))

    def to_metrics(self):
        j = prep.to_jsonable
        return {"structure": {"n_train": self.n_train, "n_test": self.n_test, "numeric": self.numeric,
                              "categorical": self.categorical, "target": self.target,
                              "columns": j(self.structure)},
                "missing": j(self.missing),
                "imputation": {"numeric": "median (training split)",
                               "categorical": "most frequent (training split)", "skewness": self.skewness},
                "class_distribution": j(dict(self.class_distribution)),
                "encoding": {"feature_names": self.feature_names, "feature_source": self.feature_source,
                             "statistics": j(self.statistics)},
                "correlated_pairs": j(self.pairs),
                "predictive_power": j(self.predictive_power.reset_index()),
                "dominance": j(self.dominance),
                "expected_top_features": self.top,
                "screened_columns": j(self.excluded) if self.excluded is not None else [],
                "notes": {"predictive_power": self.predictive_note,
                          "correlation": {"n_features": self.corr_n_features, "heatmap_top_k": self.corr_top_k,
                                          "n_pairs_found": self.n_pairs_found,
                                          "pairs_truncated": self.pairs_truncated},
                          "figures": {"numeric": list(self.figure_numeric),
                                      "categorical": list(self.figure_categorical),
                                      "limit": self.figure_limit,
                                      "boxplot_rows": self.box_rows}},
                "headline": self.headline}


# Part A's figures draw at most this many feature columns, those with the highest pps:
# a 1,000-column file would otherwise make a figure of 1,000 panels (memory, minutes).
FIGURE_FEATURES = 12
# Box plots (quartiles and outliers drawn as points) use at most this many training rows,
# a random sample drawn from the run's seed above it; tables and counts use every row.
FIGURE_ROWS = 200_000
# Part A's report shows at most this many correlated pairs (the CSV holds all that were kept).
PAIRS_SHOWN = 20


def _figure_columns(pp, numeric, categorical, limit=FIGURE_FEATURES):
    """The numeric and categorical columns Part A's figures show: the ``limit`` features
    with the highest pps (unscored ones last, in file order), each list in pps order."""
    ranked = [f for f in pp.index if pp.loc[f, "pps"] == pp.loc[f, "pps"]]
    ranked += [f for f in list(numeric) + list(categorical) if f not in ranked]
    chosen = ranked[:limit]
    return [f for f in chosen if f in numeric], [f for f in chosen if f in categorical]


def figure_sample(frame, columns, seed, limit=FIGURE_ROWS):
    """``frame[columns]``, of at most ``limit`` rows drawn without replacement from ``seed``
    (in row order); no copy of the other rows is made."""
    if len(frame) <= limit:
        return frame[columns]
    rows = analysis_rows(len(frame), seed, cap=limit)
    return frame.iloc[rows, [frame.columns.get_loc(c) for c in columns]]


def _skew_and_spread(values):
    """(skewness, standard deviation) of one numeric column's values (a pandas Series)."""
    return float(values.skew()), float(values.std())


def compute(ctx):
    """Part A's numbers: structure, columns that are no features (``Dataset.excluded``),
    missing values, class balance, encoding, correlations, each feature's predictive
    power and whether one dominates (``DOMINANCE``), and the columns the figures show."""

    ds, cfg, d = ctx.dataset, ctx.cfg, ctx.data
    tgt, num, cat = ds.target, list(ds.numeric), list(ds.categorical)
    st = eda.structure_table(ds.train, tgt)
    miss = eda.missing_table(ds.train, ds.test)
    # skewness and spread on the fitted split, one column at a time (no copy of the frame)
    moments = {c: _skew_and_spread(d.frame[c].iloc[d.train_rows]) for c in num}
    cd = eda.class_distribution(ds.train[tgt])
    corr, pairs = eda.correlation_pairs(d.X_train, d.feature_names, threshold=cfg.corr_threshold)
    pp = eda.predictive_power(ds.train, tgt, num, cat, seed=cfg.seed)
    fig_num, fig_cat = _figure_columns(pp, num, cat)
    box = figure_sample(ds.train, fig_num + [tgt], cfg.seed)
    return AResult(
        target=tgt, numeric=num, categorical=cat, n_train=len(ds.train), n_test=len(ds.test),
        n_columns=ds.train.shape[1], structure=st.reset_index(), missing=miss.reset_index(),
        n_missing_train=int(miss["train_missing"].fillna(0).sum()),
        n_missing_columns=int((miss["train_missing"].fillna(0) > 0).sum()),
        n_missing_test=int(miss["test_missing"].fillna(0).sum()),
        only_in_train=[c for c, v in miss["only_in_train"].items() if v],
        skewness={c: m[0] for c, m in moments.items()}, class_distribution=cd,
        spread={c: m[1] for c, m in moments.items()}, statistics=d.preprocessor.statistics_,
        n_onehot=sum(1 for s in d.feature_source if s in cat),
        feature_names=list(d.feature_names), feature_source=list(d.feature_source),
        train=ds.train, corr=corr, corr_threshold=cfg.corr_threshold, pairs=pairs,
        predictive_power=pp,
        dominance=eda.dominance(pp, ratio=DOMINANCE.threshold, min_pps=DOMINANCE.value("min_pps")),
        top=list(pp.index[:3]),
        excluded=ds.excluded.copy(), predictive_note=pp.attrs.get("note"),
        corr_n_features=int(corr.attrs.get("n_features", len(d.feature_names))),
        corr_top_k=int(corr.attrs.get("top_k", len(corr))),
        n_pairs_found=int(pairs.attrs.get("n_pairs_found", len(pairs))),
        pairs_truncated=bool(pairs.attrs.get("truncated", False)),
        figure_numeric=fig_num, figure_categorical=fig_cat, figure_limit=FIGURE_FEATURES,
        box_train=box, box_rows=len(box), box_seed=cfg.seed)


# How Part A's table names the rules of ``prep.SCREEN_RULES`` (the key itself when missing here).
_SCREEN_LABELS = {"constant": "constant", "date": "date/time", "id_like": "ID-like",
                  "high_cardinality": "very high cardinality"}


CLASSES_SHOWN = 20     # classes drawn in the class and per-class figures (the largest)


def _render_screened(res, out):
    """Part A's table of the columns that are not features (``AResult.excluded``) and
    what was done with them: left out of the inputs, kept (``--keep-columns``) or
    expanded (``--expand-dates``)."""
    r, table = out.report, res.excluded
    r.heading("Columns that are not features", 3)
    if table is None or not len(table):
        labels = [_SCREEN_LABELS.get(k, k) for k in prep.SCREEN_RULES]
        r.para("Every column looks like a feature: none matches a rule of the screen ("
               + ", ".join(labels) + ").")
        return
    shown = table.assign(reason=[_SCREEN_LABELS.get(k, k) for k in table["rule"]])
    show_table(out, table, "a_screened_columns", caption="Columns screened out of the training file",
                shown=shown[["column", "reason", "detail", "action", "kind"]], key=["column", "reason"])
    action = table["action"].astype(str)
    left_out = list(table.loc[action == "excluded", "column"])
    kept = list(table.loc[action.str.startswith("kept"), "column"])
    expanded = table.loc[action.str.startswith("expanded")]
    items = []
    if left_out:
        items.append(f"{names_text(left_out)} {'was' if len(left_out) == 1 else 'were'} **left out of the "
                     "network's inputs** (and of every later part). To use "
                     f"{'it' if len(left_out) == 1 else 'one'} anyway, pass "
                     f"{rp.literal('--keep-columns ' + str(left_out[0]), code=True)} (a comma-separated list keeps several).")
    if kept:
        items.append(f"{names_text(kept)} {'is' if len(kept) == 1 else 'are'} flagged but kept, as "
                     "`--keep-columns` asked.")
    for col, act in zip(expanded["column"], expanded["action"]):
        items.append(f"{rp.literal(col, code=True)} was {act.replace('expanded into ', 'expanded into numeric ')} "
                     "(`--expand-dates`).")
    dates = [c for c, rule, a in zip(table["column"], table["rule"], action) if rule == "date" and a == "excluded"]
    if dates:
        items.append("`--expand-dates` turns a date column into numeric year, month and day-of-week "
                     f"columns instead of leaving it out ({names_text(dates)}).")
    for rule in dict.fromkeys(table["rule"]):
        items.append(f"*{_SCREEN_LABELS.get(rule, rule)}*: {as_sentence(prep.SCREEN_RULES.get(rule, rule))}")
    r.bullets(items)


def _shown_of(shown, total, what):
    """A caption's note on a figure that shows some of the features: "" when it shows all."""
    if len(shown) >= total:
        return ""
    return (f": the {len(shown)} of {total:,} {what} with the highest predictive power "
            "(all of them in tables/a_predictive_power.csv)")


def render(res, out):
    """Part A's tables (tables/a_*.csv), figures (figures/a_*.png) and report section."""

    r, num, cat, tgt = out.report, res.numeric, res.categorical, res.target
    r.heading("Structure", 3)
    show_table(out, res.structure, "a_structure", caption="Columns of the training file",
                formats={c: ".1%" for c in ("missing_share",) if c in res.structure})
    r.para(f"train: {res.n_train:,} rows × {res.n_columns} columns "
           f"({len(num)} numeric, {len(cat)} categorical, target {rp.literal(tgt, code=True)}); "
           f"test: {res.n_test:,} rows.")
    _render_screened(res, out)

    r.heading("Missing values and imputation", 3)
    show_table(out, res.missing, "a_missing", caption="Missing cells per column", floatfmt=".3g",
                formats={c: ".1%" for c in ("train_share", "test_share") if c in res.missing})
    only_train = res.only_in_train
    r.bullets([
        f"{res.n_missing_train:,} missing cells in train across {res.n_missing_columns} columns; "
        f"{res.n_missing_test:,} in test"
        + (f" (columns missing only in train: {', '.join(rp.literal(c, code=True) for c in only_train)})" if only_train else "") + ".",
        "Numeric columns are imputed with the **median** of the training split: "
        + ", ".join(f"{rp.literal(c, code=True)} skewness {s:+.2f}" for c, s in res.skewness.items())
        + "; the median is robust to the long tails a mean would follow.",
        "Categorical columns are imputed with the **most frequent level** of the training split.",
        "Imputation never looks at the label (a rule that uses the label cannot be applied to "
        "unlabelled rows and leaks the target) and is fit on the training split only, never on "
        "validation or test. Part D tries missing-value indicator columns as a mitigation.",
    ])

    r.heading("Class distribution", 3)
    cd = res.class_distribution
    counts = cd["table"]["count"]
    # by position: with labels True/False, .loc would read the labels as a row mask
    top = counts.iloc[np.argsort(-counts.to_numpy(), kind="stable")[:CLASSES_SHOWN]]
    shown = list(top.index)
    fig = plots.class_distribution(top.to_numpy(), shown)
    note = ""
    if len(counts) > CLASSES_SHOWN:
        note = (f" (the {CLASSES_SHOWN} largest of {len(counts):,} classes, "
                f"{top.sum() / counts.sum():.0%} of the rows)")
    out.save_figure(fig, "a_class_distribution.png", "Class counts and shares in the training file" + note)
    r.para(f"The majority class, {rp.literal(cd['majority_class'], code=True)}, holds {cd['majority_baseline_accuracy']:.1%} of "
           f"the rows (the accuracy of always predicting it); the smallest class, {rp.literal(cd['minority_class'], code=True)}, "
           f"holds {cd['table']['share'].min():.1%}. The largest class is {cd['imbalance_ratio']:.1f}× the "
           "smallest.")
    out.save_table(cd["table"].reset_index(), "a_classes", caption="Class counts (train)", show=False)

    r.heading("Encoding and scaling", 3)
    spread = res.spread
    r.bullets([
        f"{len(cat)} categorical columns become {res.n_onehot} "
        "one-hot columns (nominal levels have no order; an integer code would invent one). "
        "Levels unseen in training encode as all zeros.",
        "Numeric columns are z-scored: before scaling their standard deviations range from "
        f"{min(spread.values()):.3g} to {max(spread.values()):.3g}, and gradient descent with one "
        "learning rate needs inputs on one scale."
        if num else "No numeric columns.",
        f"{len(res.feature_names)} encoded features in total.",
    ])

    r.heading("Features against the target", 3)
    fig_num, fig_cat = list(res.figure_numeric), list(res.figure_categorical)
    frame, classes_note = res.train, ""
    if len(counts) > CLASSES_SHOWN:          # one box or bar per class: only the largest classes
        frame = res.train[res.train[tgt].isin(set(shown))]
        classes_note = f"; the {CLASSES_SHOWN} largest of {len(counts):,} classes"
    if fig_num:
        box = res.box_train if res.box_train is not None else res.train
        if len(counts) > CLASSES_SHOWN:
            box = box[box[tgt].isin(set(shown))]
        sampled = (f"; a random sample of {res.box_rows:,} of the {res.n_train:,} rows (seed "
                   f"{res.box_seed})" if res.box_rows and res.box_rows < res.n_train else "")
        out.save_figure(plots.numeric_boxplots(box, fig_num, tgt), "a_numeric_boxplots.png",
                        "Numeric features by class (train)" + _shown_of(fig_num, len(num), "numeric features")
                        + classes_note + sampled)
    if fig_cat:
        out.save_figure(plots.categorical_countplots(frame, fig_cat, tgt), "a_categorical_counts.png",
                        "Categorical features by class (train)"
                        + _shown_of(fig_cat, len(cat), "categorical features") + classes_note)
    drawn = [f for f in fig_num + fig_cat if f in res.predictive_power.index]
    if len(drawn) > 1:
        pp = res.predictive_power.loc[drawn, "pps"].sort_values(ascending=False)
        r.para(f"Of the features drawn, {rp.literal(pp.index[0], code=True)} separates the classes most "
               f"(pps {pp.iloc[0]:.2f}, on its own) and "
               f"{rp.literal(pp.index[-1], code=True)} least (pps {pp.iloc[-1]:.2f}); "
               + (f"{sum(pp < 0.05)} of {len(pp)} tell the label almost nothing alone (pps below 0.05)."
                  if (pp < 0.05).any() else "each tells the label something alone (pps at least 0.05)."))
    if len(fig_num) + len(fig_cat) < len(num) + len(cat):
        r.para(f"The figures show the {len(fig_num) + len(fig_cat)} features with the highest predictive "
               f"power (at most {res.figure_limit}) of {len(num) + len(cat):,}, so that they stay "
               "legible and small.")

    r.heading("Correlations", 3)
    th = res.corr_threshold
    n_corr = len(res.corr)
    out.save_figure(plots.correlation_heatmap(res.corr, th), "a_correlation.png",
                    "Pearson correlation of the encoded training features"
                    + (f": the {n_corr} of {res.corr_n_features:,} most correlated with another feature"
                       if n_corr < res.corr_n_features else ""))
    if n_corr < res.corr_n_features:
        r.para(f"The heatmap shows the {n_corr} of the {res.corr_n_features:,} encoded features with the "
               f"strongest correlation to any other (at most {res.corr_top_k}); every pair was scanned "
               "for the table below.")
    if len(res.pairs):
        pairs = res.pairs.drop(columns=[c for c in ("threshold",) if c in res.pairs])
        show_table(out, res.pairs, "a_correlated_pairs", caption=f"Pairs with |r| ≥ {th:g}", floatfmt=".2f",
                    shown=pairs.head(PAIRS_SHOWN))
        if res.n_pairs_found > min(len(pairs), PAIRS_SHOWN):
            r.para(f"{res.n_pairs_found:,} pairs of encoded features have |r| ≥ {th:g}; the table shows the "
                   f"{min(len(pairs), PAIRS_SHOWN)} strongest and tables/a_correlated_pairs.csv "
                   + (f"the {len(pairs):,} strongest." if res.pairs_truncated else "all of them."))
    else:
        r.para(f"No pair of encoded features has |r| ≥ {th:g}.")

    r.heading("Which features should matter", 3)
    pp, dom = res.predictive_power, res.dominance
    out.save_table(pp.reset_index(), "a_predictive_power", floatfmt=".3f",
                   caption="Each feature alone: cross-validated single-feature tree (pps: 0 = no "
                           "better than chance, 1 = perfect) and mutual information with the label")
    text = ("By predictive power the features expected to matter most are "
            + ", ".join(f"{rp.literal(f, code=True)} (pps {pp.loc[f, 'pps']:.2f})" for f in res.top) + ". ")
    if dom["dominant"]:
        text += (f"**{rp.literal(dom['feature'], code=True)} is suspiciously dominant**: alone it reaches pps "
                 f"{dom['pps']:.2f}, {dom['observed_ratio']:.1f}× the runner-up {rp.literal(dom['runner_up'], code=True)} "
                 f"({dom['runner_up_pps']:.2f}). A single feature that predicts a label this well "
                 "deserves a check that the relationship also holds on new data (Part D).")
    elif dom["runner_up"] is None:
        text += "The file has a single feature, so no feature can dominate another."
    else:
        ratio = dom["observed_ratio"]
        text += ("No feature dominates" + (f": the best reaches {ratio:.1f}× the runner-up"
                 if np.isfinite(ratio) else "") + f" (rule: {DOMINANCE.description}).")
    r.para(text)
    if res.predictive_note:
        r.para(as_sentence(res.predictive_note))
