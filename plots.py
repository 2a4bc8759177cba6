"""Every figure of the report, one function each.

Functions take plain arrays / DataFrames, draw with matplotlib (Agg backend,
no screen needed) and return the figure; ``run_all`` saves it atomically and
adds it to the report. They compute nothing the report relies on: numbers
come from ``prep`` and ``mlp``.

Reading size: the report shows a figure at most ``WIDTH_IN`` wide and
``MAX_HEIGHT_IN`` tall (the printed page's column; on screen it is shown at its
natural size, larger), so every figure is drawn at most that large and every
text in it is at least ``MIN_FONT_PT``: at the size shown, no text is smaller
than 9 pt. Multi-panel figures wrap their panels into rows instead of growing
wider (tests/test_plots.py checks every function). A panel carries at most
``MAX_LINES`` curves as the report draws it: printed in a column 7 in wide, ten
curves in two styles cannot be told apart, so a comparison across settings
(learning rates) gets one panel per setting instead (tests/test_print.py).

Text is text: column names, class labels, category levels, file names and the
titles built from them are drawn as written, never as mathtext or TeX (a label
``$50_$99`` keeps its dollars instead of failing the figure). Every call that
draws a text which can hold data passes ``**TEXT``; tick labels are set at fixed
positions (never through matplotlib's string-category axis, whose labels are
made only when the figure is drawn), and legends are made by ``_legend``.
"""
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

WIDTH_IN = 7.0          # the widest figure: the report's printed column (A4 minus margins)
MAX_HEIGHT_IN = 9.0     # the tallest (Letter minus margins and a caption)
MIN_FONT_PT = 9         # smallest text in any figure, ticks, legends and annotations included
MAX_LINES = 6           # curves in one panel of a report figure: more cannot be told apart on paper
ACT_COLORS = {"relu": "tab:blue", "sigmoid": "tab:orange", "tanh": "tab:green"}
TEXT = {"parse_math": False, "usetex": False}   # Text properties: the string is drawn as written


def _legend(ax, **kw):
    """``ax.legend(**kw)`` with its labels and title drawn as written (see ``TEXT``)."""
    leg = ax.legend(**kw)
    for t in [*leg.get_texts(), leg.get_title()]:
        t.update(TEXT)
    return leg


def _done(fig):
    # laid out once, when the figure is drawn for saving (not here and again there)
    fig.set_layout_engine("tight")
    return fig


def _grid(n, max_cols, row_height, **kw):
    """``n`` panels in rows of at most ``max_cols``, the figure ``WIDTH_IN`` wide; unused
    panels are switched off. Returns (fig, flat list of the ``n`` axes, the 2-D axes array)."""
    ncol = max(1, min(max_cols, n))
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH_IN, min(MAX_HEIGHT_IN, row_height * nrow)),
                             squeeze=False, **kw)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n], axes


def _log_y(ax):
    """Log-scale y axis with plain-text tick labels (``0.01``, ``1e-05``); call it
    after plotting (the tick steps follow the data's range).

    The default log axis draws mathtext labels (``10^{-2}``, parsed per tick)
    and eight minor ticks per decade, each a full tick object laid out on every
    draw; plain labels and major ticks only make the log-scale figures several
    times faster to save.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()              # call after plotting: the autoscaled range
    decades = np.log10(hi / lo) if 0 < lo < hi else 1.0
    # enough labelled ticks for a range under one decade, not too many for ten
    subs = ((1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1.5 else
            (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0))
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _boxplot_by_class(ax, df, column, target):
    """Box plot of ``column`` per class of ``target`` on ``ax`` (missing values dropped)."""
    classes = sorted(df[target].unique())
    ax.boxplot([df.loc[df[target] == c, column].dropna().to_numpy() for c in classes],
               showfliers=False)
    ax.set_xticks(range(1, len(classes) + 1), [str(c) for c in classes], **TEXT)
    ax.set_xlabel(str(target), **TEXT)


def _class_counts(df, column, target):
    """Rows per (level of ``column``, class): a DataFrame, levels x sorted classes."""
    table = df.groupby([column, target], observed=True).size().unstack(fill_value=0)
    return table.reindex(columns=sorted(df[target].unique()), fill_value=0)


def class_distribution(counts, labels, title="Class distribution (train)"):
    """Bar chart of class counts with count and share on each bar.

    Parameters
    ----------
    counts : array-like of shape (n_classes,)
    labels : list of str, one per class
    """
    counts = np.asarray(counts, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.0))
    bars = ax.bar(np.arange(len(counts)), counts, color="tab:blue")
    ax.set_xticks(np.arange(len(counts)), [str(l) for l in labels], **TEXT)
    total = counts.sum()
    for bar, c in zip(bars, counts):
        ax.annotate(f"{int(c):,}\n{c / total:.1%}", (bar.get_x() + bar.get_width() / 2, c),
                    ha="center", va="bottom", fontsize=MIN_FONT_PT)
    ax.set_ylabel("rows")
    ax.set_xlabel("class")
    ax.set_ylim(0, counts.max() * 1.22)
    ax.set_title(title, **TEXT)
    return _done(fig)


def numeric_boxplots(df, columns, target):
    """One box plot per numeric column, grouped by class (missing values dropped)."""
    fig, axes, _ = _grid(len(columns), 2 if len(columns) <= 4 else 3, 2.1)
    for ax, col in zip(axes, columns):
        _boxplot_by_class(ax, df, col, target)
        ax.set_title(str(col), fontsize=10, **TEXT)
    fig.suptitle("Numeric features by class (outliers hidden)", fontsize=11, **TEXT)
    return _done(fig)


def categorical_countplots(df, columns, target):
    """Grouped bar chart of class counts for each level of each categorical column."""
    classes = sorted(df[target].unique())
    fig, axes, _ = _grid(len(columns), 2, 2.9)
    for k, (ax, col) in enumerate(zip(axes, columns)):
        table = _class_counts(df, col, target)
        x = np.arange(len(table.index))
        width = 0.8 / len(classes)
        for i, c in enumerate(classes):
            ax.bar(x + i * width - 0.4 + width / 2, table[c].to_numpy(), width, label=str(c))
        ax.set_xticks(x, [str(v) for v in table.index], rotation=30, ha="right", fontsize=MIN_FONT_PT, **TEXT)
        ax.set_title(str(col), fontsize=10, **TEXT)
        ax.set_ylabel("rows")
        if k == 0:   # one legend: the classes are the same in every panel
            _legend(ax, title=str(target), fontsize=MIN_FONT_PT, title_fontsize=MIN_FONT_PT)
    return _done(fig)


def correlation_heatmap(corr, threshold=None):
    """Heatmap of a correlation matrix (DataFrame with matching index and columns).

    Cells with ``|r| >= threshold`` (all off-diagonal cells when ``threshold`` is
    None) are annotated with r at ``MIN_FONT_PT``: two decimals ("-0.95"), or
    without the leading zero ("-.95") when a cell is too narrow for that, or not
    at all when not even that fits (the title says so). The colour bar sits
    below the matrix, so the cells get the width.
    """
    n = corr.shape[0]
    labels = max(len(str(c)) for c in corr.columns)
    label_in = min(2.6, 0.07 * labels + 0.25)                # 9 pt tick labels (y: beside, x: rotated below)
    cell = min(0.45, (WIDTH_IN - label_in - 0.3) / n)        # 0.3 in: margins
    fig, (ax, cax) = plt.subplots(2, 1, figsize=(min(WIDTH_IN, n * cell + label_in + 0.3),
                                                 min(MAX_HEIGHT_IN, n * cell + label_in + 1.2)),
                                  height_ratios=[n * cell, 0.15])
    im = ax.imshow(corr.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n), [str(c) for c in corr.columns], rotation=60, ha="right", fontsize=MIN_FONT_PT,
                  **TEXT)
    ax.set_yticks(range(n), [str(c) for c in corr.index], fontsize=MIN_FONT_PT, **TEXT)
    values = corr.to_numpy()
    em_in = MIN_FONT_PT / 72                                   # widths of "-0.95" and "-.95" in em
    fmt = next((f for f, ems in ((lambda v: f"{v:.2f}", 3.06),
                                 (lambda v: f"{v:.2f}".replace("0.", ".", 1), 2.43))
                if ems * em_in <= 0.95 * cell), None)
    if fmt is not None:
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if np.isfinite(v) and i != j and (threshold is None or abs(v) >= threshold):
                    ax.text(j, i, fmt(v), ha="center", va="center", fontsize=MIN_FONT_PT,
                            color="white" if abs(v) > 0.6 else "black")
    fig.colorbar(im, cax=cax, orientation="horizontal", label="Pearson r")
    title = "Pearson r of the encoded features"
    if fmt is None:
        title += " (too many to annotate; see the table)"
    elif threshold is not None:
        title += f" (|r| ≥ {threshold:g} annotated)"
    fig.suptitle(title, fontsize=10, **TEXT)
    return _done(fig)


def accuracy_curves(histories, baseline=None):
    """Train (solid) and validation (dashed) accuracy per iteration for several runs.

    Parameters
    ----------
    histories : dict name -> dict with arrays ``train_acc`` and ``val_acc`` (n_iter,)
    baseline : float, optional majority-class accuracy drawn as a grey line
    """
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.1))
    for i, (name, h) in enumerate(histories.items()):
        color = ACT_COLORS.get(name, f"C{i}")
        it = np.arange(1, len(h["train_acc"]) + 1)
        ax.plot(it, h["train_acc"], color=color, label=f"{name} train")
        ax.plot(it, h["val_acc"], color=color, ls="--", label=f"{name} validation")
    if baseline is not None:
        ax.axhline(baseline, color="grey", lw=0.8, ls=":", label=f"majority class ({baseline:.3f})")
    ax.set_xlabel("iteration (full-batch gradient step)")
    ax.set_ylabel("accuracy")
    _legend(ax, fontsize=MIN_FONT_PT)
    ax.grid(alpha=0.3)
    ax.set_title("Train and validation accuracy", **TEXT)
    return _done(fig)


def gradient_magnitudes(series, title="Mean |dL/dW| per layer", ylabel="mean |dL/dW|"):
    """Log-scale curves, one per series; series sharing a group share a colour.

    Parameters
    ----------
    series : dict (group, kind) -> array of shape (n_iter,)
        ``group`` picks the colour (an activation name uses its usual colour),
        ``kind`` the line style (first kind solid, second dashed, ...).
    """
    groups = list(dict.fromkeys(g for g, _ in series))
    kinds = list(dict.fromkeys(k for _, k in series))
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.1))
    for (group, kind), values in series.items():
        color = ACT_COLORS.get(group, f"C{groups.index(group)}")
        ax.plot(np.arange(1, len(values) + 1), values, color=color,
                ls=styles[kinds.index(kind) % len(styles)], label=f"{group} {kind}")
    _log_y(ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel, **TEXT)
    _legend(ax, fontsize=MIN_FONT_PT, ncol=2 if len(series) > 6 else 1)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title, fontsize=10, **TEXT)
    return _done(fig)


def depth_ratios(depths, ratios):
    """Ratio of last-hidden-layer to first-layer gradient magnitude against depth.

    Parameters
    ----------
    depths : array-like of int, shape (n_depths,)
    ratios : dict activation -> array of shape (n_depths,)
    """
    fig, ax = plt.subplots(figsize=(6, 3.0))
    for name, r in ratios.items():
        ax.plot(depths, r, marker="o", color=ACT_COLORS.get(name), label=str(name))
    _log_y(ax)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("number of hidden layers")
    ax.set_ylabel("mean|dW_last| / mean|dW_1| at init")
    _legend(ax)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Gradient ratio across depth", **TEXT)
    return _done(fig)


def attribution_bars(tables, title):
    """Horizontal bars of attribution scores: one bar per model for each feature, in one panel.

    Features are sorted by their mean share over the models (largest on top), so
    the models' rankings can be compared along one axis; the feature names are
    written once, at a readable size.

    Parameters
    ----------
    tables : dict model name -> DataFrame with columns ``feature`` and ``share``
    """
    import pandas as pd

    shares = pd.DataFrame({name: t.set_index(t["feature"].astype(str))["share"]
                           for name, t in tables.items()})
    shares = shares.loc[shares.mean(axis=1).sort_values().index]   # largest mean share on top
    n_models, n_feat = shares.shape[1], shares.shape[0]
    bar = 0.8 / n_models
    height = min(MAX_HEIGHT_IN, max(2.2, (0.11 + 0.085 * n_models) * n_feat + 1.0))
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height))
    y = np.arange(n_feat)
    for i, name in enumerate(shares.columns):
        ax.barh(y + (n_models - 1 - 2 * i) * bar / 2, shares[name].to_numpy(dtype=float), bar,
                color=ACT_COLORS.get(name, f"C{i}"), label=str(name))
    ax.set_yticks(y, [str(f) for f in shares.index], fontsize=MIN_FONT_PT, **TEXT)
    ax.set_ylim(-0.6, n_feat - 0.4)
    ax.set_xlabel("share of total attribution")
    ax.grid(alpha=0.3, axis="x")
    if n_models > 1:
        _legend(ax, fontsize=MIN_FONT_PT, loc="lower right")
    ax.set_title(title, fontsize=11, **TEXT)
    return _done(fig)


def grouped_bars(frame, title, ylabel):
    """Grouped bar chart of a DataFrame: one group per row, one bar per column.

    Short row labels make vertical bars; long ones (more than 12 characters, e.g.
    mitigation names) make horizontal bars, first row on top, so the labels are
    read level instead of rotated.
    """
    labels = [str(v) for v in frame.index]
    k = max(1, frame.shape[1])
    width = 0.8 / k
    pos = np.arange(len(labels))
    horizontal = max((len(s) for s in labels), default=0) > 12
    if horizontal:
        fig, ax = plt.subplots(figsize=(WIDTH_IN, min(MAX_HEIGHT_IN, max(2.2, (0.13 + 0.09 * k) * len(labels) + 0.9))))
        for i, col in enumerate(frame.columns):
            ax.barh(pos + i * width - 0.4 + width / 2, frame[col].to_numpy(dtype=float), width, label=str(col))
        ax.set_yticks(pos, [textwrap.fill(s, 30) for s in labels], fontsize=MIN_FONT_PT, **TEXT)
        ax.invert_yaxis()                       # first row (and first column) on top, as in the table
        ax.set_xlabel(ylabel, **TEXT)
        ax.grid(alpha=0.3, axis="x")
        _legend(ax, fontsize=MIN_FONT_PT, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=k, frameon=False)
    else:
        fig, ax = plt.subplots(figsize=(min(WIDTH_IN, max(6, 0.9 * len(pos) + 2)), 3.2))
        for i, col in enumerate(frame.columns):
            ax.bar(pos + i * width - 0.4 + width / 2, frame[col].to_numpy(dtype=float), width, label=str(col))
        ax.set_xticks(pos, labels, rotation=25 if len(labels) > 6 else 0,
                      ha="right" if len(labels) > 6 else "center", fontsize=MIN_FONT_PT, **TEXT)
        ax.set_ylabel(ylabel, **TEXT)
        ax.grid(alpha=0.3, axis="y")
        _legend(ax, fontsize=MIN_FONT_PT)
    ax.set_title(title, fontsize=10, **TEXT)
    return _done(fig)


def confusion(matrix, labels, title="Confusion matrix (test)"):
    """Confusion matrix with counts and row-normalised shares (scikit-learn's display)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    names = [str(l) for l in labels]
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=names).plot(
        ax=ax, colorbar=False, values_format="d")
    ax.set_xticks(range(len(names)), names, **TEXT)     # the class names as written
    ax.set_yticks(range(len(names)), names, **TEXT)
    ax.set_title(title, fontsize=10, **TEXT)
    return _done(fig)


def loss_panels(curves, title, ylabel="training loss", one_row=False):
    """One panel per setting (e.g. learning rate): mean curve and min-max band per series
    (e.g. per model, or per bias-gradient path), on a log scale shared by the panels.

    Parameters
    ----------
    curves : dict panel title -> dict series name -> array of shape (n_runs, n_iter)
        (NaN after a run diverged); keep the series per panel few (``MAX_LINES``)
    one_row : bool
        All panels side by side (up to five), the legend below them: a compact strip
        to read the settings left to right; else rows of two or three panels.
    """
    import warnings

    n = len(curves)
    one_row = one_row and n <= 5
    fig, flat, axes = _grid(n, n if one_row else 3 if n > 4 else 2, 2.4 if one_row else 2.2, sharey=True)
    for ax, (panel, models) in zip(flat, curves.items()):
        for i, (name, c) in enumerate(models.items()):
            c = np.asarray(c, dtype=float)
            it = np.arange(c.shape[1])
            with warnings.catch_warnings():  # columns where every run diverged stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(c, 0), np.nanmin(c, 0), np.nanmax(c, 0)
            ax.plot(it, mean, color=f"C{i}", label=str(name), lw=1.2)
            ax.fill_between(it, lo, hi, color=f"C{i}", alpha=0.2, lw=0)
        _log_y(ax)
        ax.set_xlim(0, c.shape[1] - 1)          # the whole run, also where every seed diverged early
        ax.set_title(str(panel), fontsize=10, **TEXT)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("iteration", fontsize=MIN_FONT_PT)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=MIN_FONT_PT, **TEXT)
    if one_row:
        handles, labels = flat[0].get_legend_handles_labels()
        leg = fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=MIN_FONT_PT,
                         frameon=False)
        for t in leg.get_texts():
            t.update(TEXT)
        fig.suptitle(title, fontsize=10, **TEXT)
        fig.set_layout_engine("tight", rect=(0, 0.08, 1, 1))     # room for the legend below
        return fig
    _legend(flat[0], fontsize=MIN_FONT_PT)
    fig.suptitle(title, fontsize=10, **TEXT)
    return _done(fig)


def feature_by_class_per_split(frames, column, target, numeric=True):
    """One panel per split: a numeric column's box plot by class, or a categorical's class shares.

    Parameters
    ----------
    frames : dict split name -> DataFrame with ``column`` and ``target``
    numeric : bool, box plots (True) or a stacked bar of class shares per level (False)
    """
    fig, axes, _ = _grid(len(frames), 2, 3.0, sharey=numeric)
    for k, (ax, (split, df)) in enumerate(zip(axes, frames.items())):
        if numeric:
            _boxplot_by_class(ax, df, column, target)
            ax.set_ylabel(str(column), **TEXT)
        else:
            counts = _class_counts(df, column, target)
            shares = counts.div(counts.sum(axis=1), axis=0)
            x = np.arange(len(shares.index))
            bottom = np.zeros(len(x))
            for i, c in enumerate(shares.columns):
                ax.bar(x, shares[c].to_numpy(), bottom=bottom, label=str(c), color=f"C{i}")
                bottom += shares[c].to_numpy()
            ax.set_xticks(x, [str(v) for v in shares.index], rotation=25, fontsize=MIN_FONT_PT, **TEXT)
            ax.set_ylabel(f"share of {target}", **TEXT)
            if k == len(frames) - 1:   # one legend: the classes are the same in every panel
                _legend(ax, title=str(target), fontsize=MIN_FONT_PT, title_fontsize=MIN_FONT_PT)
        ax.set_title(f"{split} ({len(df):,} rows)", fontsize=10, **TEXT)
    fig.suptitle(f"{column} against {target}, per split", fontsize=11, **TEXT)
    return _done(fig)



def interval_bars(labels, values, low, high, title, xlabel, first_is_total=False):
    """One horizontal bar per term with its interval as an error bar, first term on top,
    and a line at zero (e.g. a change split into additive terms, each with its interval).

    Parameters
    ----------
    labels : list of str, one per term (drawn as written)
    values, low, high : array-like of shape (n_terms,), the value and its interval's ends
    title, xlabel : str
    first_is_total : bool, draw the first bar grey and set it apart (the sum of the others)
    """
    labels = [str(s) for s in labels]
    values, low, high = (np.asarray(a, dtype=float) for a in (values, low, high))
    pos = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(WIDTH_IN, min(MAX_HEIGHT_IN, max(2.2, 0.45 * len(labels) + 1.2))))
    colors = ["tab:red" if v < 0 else "tab:blue" for v in values]
    if first_is_total and len(colors):
        colors[0] = "tab:gray"
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.barh(pos, values, 0.6, color=colors, alpha=0.75)
    ax.errorbar(values, pos, xerr=np.vstack([values - low, high - values]), fmt="none", ecolor="black",
                capsize=4, lw=1.2)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(pos, [textwrap.fill(s, 34) for s in labels], fontsize=MIN_FONT_PT, **TEXT)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=MIN_FONT_PT)
    ax.set_xlabel(xlabel, **TEXT)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title, fontsize=10, **TEXT)
    return _done(fig)
