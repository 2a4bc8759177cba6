"""The rule type: a named threshold that decides a verdict, and the sentence that states it.

Every part and the shift diagnosis declare their rules as ``Rule`` objects
next to the code that applies them; the report quotes ``Rule.description``
instead of restating a rule by hand.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A rule that decides a verdict: its name, its threshold and the sentence stating it.

    ``text`` is a format string over ``threshold``, ``points`` (the threshold
    ×100, for fractions read as points or percent), ``negative`` (−threshold,
    for two-sided rules) and the names in ``also`` (further numbers the rule
    uses); ``description`` is that sentence, and the report quotes it instead
    of restating the rule by hand. Rules applied with a noise band (the shift
    diagnosis's) also say what they measure (``statistic``) and how the band is
    formed (``noise``); ``text`` is then what it means when the rule fires.
    """
    name: str
    threshold: float
    text: str
    also: tuple = ()
    statistic: str = ""     # what is measured (the shift diagnosis's rules say it)
    noise: str = ""         # how the noise band the statistic must also clear is formed

    def value(self, name):
        """One of the further numbers in ``also`` by name."""
        return dict(self.also)[name]

    @property
    def description(self):
        return self.text.format(threshold=self.threshold, points=f"{self.threshold * 100:g}",
                                negative=-self.threshold, **dict(self.also))
