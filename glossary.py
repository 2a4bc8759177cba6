"""The report's glossary: every abbreviation and term of art its text may use.

``define_terms`` registers on a report the ``GLOSSARY`` terms its text uses:
explained at first use and listed in the glossary, no stray entry.
"""
import re

import report as rp


# -------------------------------------------------------------------- summary
# Every abbreviation and term of art the report's text may use: term -> (what its
# first use shows in parentheses, the glossary's definition). ``define_terms``
# registers the ones a report actually uses, so the glossary lists no stray entry;
# ``summary`` applies it once to the summary and every part's section together.
GLOSSARY = {
    "pps": ("predictive-power score",
            "predictive-power score: how well one column alone predicts the label, measured with a "
            "small cross-validated decision tree (0 = no better than always predicting the majority "
            "class, 1 = perfectly)"),
    "KS": ("Kolmogorov–Smirnov statistic",
           "Kolmogorov–Smirnov statistic: the largest gap between the cumulative distributions of a "
           "numeric column in two files (0 = identical, 1 = no overlap)"),
    "Cramér's V": ("association of a categorical column with the file",
                   "the association between a categorical column and the file a row comes from (0 = the "
                   "same level shares in both files, 1 = no level in common)"),
    "ROC AUC": ("area under the ROC curve",
                "area under the receiver-operating-characteristic curve: the chance that a classifier "
                "scores a random row of one group above a random row of the other (0.5 = chance, 1 = "
                "perfect separation)"),
    "AUC": ("area under the ROC curve",
            "area under the receiver-operating-characteristic curve (0.5 = chance, 1 = perfect separation)"),
    "ReLU": ("rectified linear unit, max(0, z)", "rectified linear unit: the activation g(z) = max(0, z)"),
    "CI": ("confidence interval",
           "confidence interval: a range that contains the true value in the stated share of repeated samples"),
    "macro-F1": ("F1 averaged over classes",
                 "macro-averaged F1 score: the F1 score (harmonic mean of precision and recall) of each "
                 "class, averaged with the same weight for every class, so small classes count as much as "
                 "large ones"),
    "lr": ("learning rate", "learning rate: the step size of gradient descent"),
    "MLP": ("multi-layer perceptron", "multi-layer perceptron: a feed-forward network of fully connected layers"),
    "L2": ("weight penalty", "L2 penalty (weight decay): adds λ times the sum of squared weights to the loss"),
    "Glorot": ("weights scaled to the layer sizes",
               "Glorot (Xavier) initialisation: weights drawn with variance 2 / (fan_in + fan_out), so "
               "the signal keeps its scale from layer to layer"),
    "Spearman correlation": ("correlation of two rankings",
                             "the correlation of two rankings (+1 = same order, −1 = reversed order, "
                             "0 = unrelated)"),
    "z-scored": ("minus the training mean, divided by the training standard deviation",
                 "centred on the training split's mean and divided by its standard deviation"),
    "one-hot": ("one 0/1 column per level",
                "encoding: a categorical column becomes one 0/1 column per level"),
}


def _block_texts(blocks):
    """The running text, captions and table cells of report blocks (not code or math)."""
    def flat(items):
        for it in items:
            if isinstance(it, (list, tuple)):
                yield from flat(it)
            else:
                yield str(it)
    for b in blocks:
        for name in ("text", "caption"):
            v = getattr(b, name, None)
            if isinstance(v, str) and not isinstance(b, (rp.Code, rp.Math)):
                yield v
        if isinstance(b, rp.Bullets):
            yield from flat(b.items)
        if isinstance(b, rp.Table):
            yield from map(str, b.columns)
            for row in b.rows:
                yield from map(str, row)


def define_terms(report, blocks=None):
    """Register on ``report`` (``Report.define``) every ``GLOSSARY`` term used in ``blocks``
    (default: the report's own blocks): explained at its first use and in the glossary."""
    text = "\n".join(_block_texts(report.blocks if blocks is None else blocks))
    for term in sorted(GLOSSARY, key=len, reverse=True):    # "ROC AUC" is not a use of "AUC"
        pattern = re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)")
        if pattern.search(text):
            short, meaning = GLOSSARY[term]
            report.define(term, meaning, short=short)
            text = pattern.sub(" ", text)
    return report
