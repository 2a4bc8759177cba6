"""Figures at reading size: every text of every plotting function is >= 9 pt where the report shows it.

The report (report.py) shows a figure at its natural size on screen (one image
pixel per CSS pixel, never wider than the content column) and, on paper, at
most ``report.PRINT_WIDTH_IN`` wide and ``report.FIGURE_MAX_HEIGHT_IN`` tall, never wider
than it was drawn (``report._drawn_width_in``).
A font of ``f`` pt in a figure ``w`` inches wide that is shown ``d`` inches wide
reads as ``f * d / w`` pt.
"""
import inspect

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import plots  # noqa: E402
import report as rp  # noqa: E402

MIN_PT = 9.0


def _frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "minimum_length_of_stay": rng.integers(1, 30, n).astype(float),
        "score": rng.normal(50, 10, n),
        "reviews": rng.poisson(5, n).astype(float),
        "availability": rng.uniform(0, 365, n),
        "size": rng.normal(0, 1, n),
        "district": rng.choice(["North side of the river", "South", "East", "West", "Centre"], n),
        "kind": rng.choice(["Entire home/apt", "Private room", "Shared room"], n),
        "colour": rng.choice(["red", "green"], n),
        "label": rng.integers(0, 4, n),
    })


def _corr(n_features):
    rng = np.random.default_rng(1)
    names = [f"district=Long neighbourhood name {i}" if i % 3 == 0 else f"feature_{i}" for i in range(n_features)]
    x = rng.normal(size=(200, n_features))
    x[:, 1] = x[:, 0] + 0.3 * rng.normal(size=200)
    return pd.DataFrame(x, columns=names).corr()


def _attr_table(seed, n=14):
    rng = np.random.default_rng(seed)
    share = rng.dirichlet(np.ones(n))
    names = [f"neighbourhood_group=Staten Island {i}" if i % 4 == 0 else f"feature_{i}" for i in range(n)]
    return pd.DataFrame({"feature": names, "share": share})


def _curves(panels):
    rng = np.random.default_rng(2)
    out = {}
    for p in range(panels):
        c = np.abs(rng.normal(1, 0.1, size=(3, 40))).cumprod(axis=1)[:, ::-1] / 10
        c[0, 30:] = np.nan                                       # a diverged run
        out[f"learning rate {10.0 ** (p - 2):g}"] = {"separate biases": c, "shared bias": c * 0.9}
    return out


df = _frame()
NUMERIC = ["minimum_length_of_stay", "score", "reviews", "availability", "size"]
# every public plotting function, with representative (and a few large) inputs
CASES = {
    "class_distribution": [lambda: plots.class_distribution([900, 4000, 3000, 1500], ["0", "1", "2", "3"])],
    "numeric_boxplots": [lambda: plots.numeric_boxplots(df, NUMERIC[:4], "label"),
                         lambda: plots.numeric_boxplots(df, NUMERIC, "label")],
    "categorical_countplots": [lambda: plots.categorical_countplots(df, ["district", "kind"], "label"),
                               lambda: plots.categorical_countplots(df, ["district", "kind", "colour"], "label")],
    "correlation_heatmap": [lambda: plots.correlation_heatmap(_corr(12), 0.1),
                            lambda: plots.correlation_heatmap(_corr(30), None)],
    "accuracy_curves": [lambda: plots.accuracy_curves(
        {a: {"train_acc": np.linspace(0.3, 0.9, 50), "val_acc": np.linspace(0.3, 0.8, 50)}
         for a in ("relu", "sigmoid", "tanh")}, baseline=0.35)],
    "gradient_magnitudes": [lambda: plots.gradient_magnitudes(
        {(a, f"layer {k}"): np.geomspace(1e-1, 1e-4, 30) * k for a in ("relu", "sigmoid") for k in (1, 2, 3, 4)})],
    "depth_ratios": [lambda: plots.depth_ratios([1, 2, 4, 8], {"relu": [1, 0.9, 0.7, 0.5],
                                                               "sigmoid": [1, 0.2, 0.01, 1e-4]})],
    "attribution_bars": [lambda: plots.attribution_bars({"relu": _attr_table(0), "sigmoid": _attr_table(1)},
                                                        "Sensitivity per encoded feature"),
                         lambda: plots.attribution_bars({"relu": _attr_table(0, 30), "sigmoid": _attr_table(1, 30),
                                                         "tanh": _attr_table(2, 30)}, "Many features")],
    "grouped_bars": [lambda: plots.grouped_bars(
        pd.DataFrame({"val_acc": np.linspace(0.5, 0.7, 7), "test_acc": np.linspace(0.4, 0.6, 7)},
                     index=[f"mitigation number {i}" for i in range(7)]), "Mitigations", "accuracy"),
                     lambda: plots.grouped_bars(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 1.0, 0.5]},
                                                             index=["x", "y", "z"]), "Short labels", "value")],
    "confusion": [lambda: plots.confusion(np.arange(16).reshape(4, 4) * 37, ["0", "1", "2", "3"])],
    "loss_panels": [lambda: plots.loss_panels(_curves(3), "Q2: loss"),
                    lambda: plots.loss_panels(_curves(6), "Q2: loss, six panels")],
    "interval_bars": [lambda: plots.interval_bars(
        ["total", "covariate: inputs moved within train's range", "conditional: $label | inputs$ changed",
         "unseen"], [-4.2, -1.0, -3.5, 0.3], [-5.0, -1.8, -4.6, -0.1], [-3.4, -0.2, -2.4, 0.7],
        "Validation to test: accuracy change of `relu`", "change in accuracy (points)", first_is_total=True)],
    "feature_by_class_per_split": [
        lambda: plots.feature_by_class_per_split({"train.csv": df, "test.csv": df.iloc[:60]}, "score", "label"),
        lambda: plots.feature_by_class_per_split({"train.csv": df, "test.csv": df.iloc[:60]}, "kind", "label",
                                                 numeric=False)],
}


def _shown_scale(fig):
    """(screen, print) factors from a font's nominal pt to the pt it reads at in the report."""
    w, h = fig.get_size_inches()
    natural_px = w * rp.SAVEFIG_DPI                          # the PNG's width, saved without cropping
    screen = (rp.SAVEFIG_DPI / 96) * min(1.0, rp.SCREEN_COLUMN_PX / natural_px)
    shown_in = min(w, rp.PRINT_WIDTH_IN, rp.FIGURE_MAX_HEIGHT_IN * w / h)   # printed at its drawn width
    return screen, shown_in / w


def _texts(fig):
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_every_plotting_function_has_a_case():
    public = {name for name, f in inspect.getmembers(plots, inspect.isfunction)
              if not name.startswith("_") and f.__module__ == plots.__name__}
    assert public == set(CASES)


@pytest.mark.parametrize("name,i", [(n, i) for n, cases in CASES.items() for i in range(len(cases))])
def test_fonts_at_least_9pt_as_shown(name, i):
    fig = CASES[name][i]()
    try:
        assert fig.get_layout_engine() is not None, "savefig_atomic would crop it: sizes would change"
        screen, paper = _shown_scale(fig)
        texts = _texts(fig)
        assert len(texts) >= 3                               # titles, labels and ticks were found
        small = sorted({(round(t.get_fontsize() * min(screen, paper), 2), t.get_text()[:30]) for t in texts
                        if t.get_fontsize() * min(screen, paper) < MIN_PT - 1e-6})
        w, h = fig.get_size_inches()
        assert not small, (f"{name}: figure {w:.1f} x {h:.1f} in has text below {MIN_PT} pt as shown "
                           f"(screen x{screen:.2f}, paper x{paper:.2f}): {small[:5]}")
    finally:
        plt.close(fig)


def test_scale_model_catches_a_wide_figure():
    """The check above can fail: a 14 in wide figure with 10 pt text reads as ~5 pt on paper."""
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.set_title("title", fontsize=10)
    _, paper = _shown_scale(fig)
    plt.close(fig)
    assert 10 * paper < MIN_PT
