"""The ensemble's combiner: how per-family probabilities become the submitted ones.

One object, :class:`SoftVote`, holds the rule (the weighted mean of the families'
softmaxes, then one temperature on top, which never moves the arg-max) and does
everything with it: ``fit`` on validation (weights by selection, the temperature only
when held-out evidence is beyond noise), ``vote`` / ``apply`` on numpy arrays, ``to_keras``
in an exported graph, ``to_record`` / ``from_record`` in ``report/ensemble.json``. The
submission, ``predict``, the report's tables and figures, ``export --ensemble`` and the
benchmarks all call it, so a change to selection or calibration (or a new rule, such as
stacking: another class with these methods) is made here once.

Members vote with their softmaxes as they are: a member's own temperature (fitted on a
hundred images it may happen to classify perfectly) is shown in the report, never
applied before the vote, so it cannot turn the member into a hard vote.
"""

from dataclasses import dataclass

import numpy as np

from ripik_clf.evidence import Choice
from ripik_clf.predict.calibration import (
    apply_temperature,
    choose_temperature,
    temperature_in_graph,
)
from ripik_clf.predict.voting import bagged_greedy_selection, greedy_selection, soft_vote


@dataclass(frozen=True)
class SoftVote:
    """The weighted soft vote of families (``weights``: one per family, any scale) and
    the ensemble's ``temperature`` on top."""

    weights: tuple
    temperature: float = 1.0

    @classmethod
    def equal(cls, families):
        """The design's vote: every family the same weight, no temperature."""
        return cls(tuple([1.0] * families))

    @classmethod
    def from_record(cls, definition):
        """The combiner an :class:`~ripik_clf.workdir.EnsembleDefinition` records."""
        return cls(tuple(float(w) for w in definition.weights), float(definition.temperature))

    def to_record(self):
        """The fields of ``report/ensemble.json`` that hold it."""
        return {"weights": [float(w) for w in self.weights], "temperature": float(self.temperature)}

    def vote(self, families):
        """The weighted mean ``(F, N, C) -> (N, C)`` before the temperature: what the
        two-stage TTA's confidence is measured on."""
        return soft_vote(families, self.weights)

    def apply(self, families):
        """The submitted probabilities ``(N, C)`` of per-family ones ``(F, N, C)``."""
        return apply_temperature(self.vote(families), self.temperature)

    def to_keras(self, families, calibrated=True):
        """:meth:`vote` (``calibrated``: :meth:`apply`) in a Keras graph, from a list of
        per-family probability tensors ``(N, C)``."""
        weights = np.asarray(self.weights, float)
        voted = sum(float(w) * f for w, f in zip(weights / weights.sum(), families))
        return temperature_in_graph(voted, self.temperature) if calibrated else voted

    @classmethod
    def fit(cls, probabilities, y, settings, names, folded=False):
        """The combiner chosen on validation probabilities ``(F, N, C)`` of ``names``.

        ``settings``: the ensemble config (``member_weights`` given win; ``select``:
        bagged, greedy or none). The temperature stays 1 unless one fitted on half the
        images lowers the other half's log loss beyond noise; ``folded`` (k-fold
        families) keeps it at 1: validation there is one fold model, the submission the
        mean of K, which is softer, so a temperature fitted on the one misfits the other.

        Returns:
            (combiner, the :class:`~ripik_clf.evidence.Choice` records made, report
            lines on the weights).
        """
        weights, weights_choice, notes = _weights(probabilities, y, settings, names)
        if folded:
            temperature = 1.0
            temperature_choice = Choice(
                "temperature", "1", "1", "held-out log loss", len(y),
                note="k-fold members: validation is one fold model, the submission the "
                "mean of the folds; not fitted",
            )  # fmt: skip
        else:
            voted = cls(tuple(weights)).vote(probabilities)
            temperature, temperature_choice = choose_temperature(voted, y)
        choices = [c for c in (weights_choice, temperature_choice) if c]
        return cls(tuple(weights), temperature), choices, notes


def _weights(probabilities, y, settings, names):
    """The soft-voting weights: given, equal, or chosen on validation (bagged or plain
    greedy selection). Returns (weights, the bagged choice's evidence or None, notes)."""
    if settings.member_weights or settings.select == "none":  # given: the user's choice wins
        given = [float(w) for w in settings.member_weights]
        return given or [1.0] * len(names), None, []
    choice = None
    if settings.select == "bagged":
        weights, score, choice = bagged_greedy_selection(probabilities, y)
        weights = [round(float(w), 4) for w in weights]
        how = "Bagged greedy selection (30 bootstrap resamples of validation)"
    else:
        counts, score = greedy_selection(probabilities, y)
        weights = [float(c) for c in counts]
        how = "Greedy selection (Caruana et al., 2004; no check against noise)"
    chosen = ", ".join(f"{n} x{w:g}" for n, w in zip(names, weights) if w)
    print(f"{settings.select} selection: {chosen} (validation macro-F1 {score:.4f}, in-sample)")
    return weights, choice, [f"{how} chose: {chosen}; validation macro-F1 {score:.4f} "
                             "(in-sample: the images the weights were chosen on).", ""]  # fmt: skip
