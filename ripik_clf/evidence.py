"""Evidence for automatic choices: paired comparisons that know their own noise (pure).

Every automatic choice (flips of the copies, TTA, the ensemble's temperature) has a named
safe default and moves away from it only when held-out, paired evidence puts the gain
beyond noise: the lower end of a paired-bootstrap interval (``LEVEL``) of the mean
per-image gain is above zero. On ~100 validation images one image is a point of accuracy
and a log-loss gap of 0.002 is far inside the noise (its bootstrap standard error there is
about 0.01), so a bare "lower is better" follows noise half of the time.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

LEVEL = 0.90  # two-sided: the lower end above zero is a one-sided 95% test
BOOTSTRAPS = 2000
MIN_IMAGES = 30  # fewer held-out images: keep the default, say so
# A mean gain below this is no gain however consistent: probes fitted to a solver's
# tolerance differ by ~1e-5 per image on identical data, all in one direction.
MIN_EFFECT = 1e-3


def per_image_log_loss(probabilities, y):
    """``-log p(true class)`` per image ``(N,)`` (clipped as scikit-learn's log_loss)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    return -np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1.0))


def paired_interval(gain, level=LEVEL, boots=BOOTSTRAPS, seed=0):
    """Mean of per-image ``gain`` and its paired-bootstrap percentile interval.

    ``gain``: ``(N,)`` per-image differences on the same images (positive = the candidate
    is better). Returns ``(mean, low, high)``; NaN for no images."""
    gain = np.asarray(gain, dtype=np.float64)
    if not len(gain):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = gain[rng.integers(0, len(gain), (boots, len(gain)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(gain.mean()), float(low), float(high)


@dataclass
class Choice:
    """One automatic choice, as recorded (``report/ensemble.json``, ``settings.json``)."""

    name: str  # what was chosen: flips, tta, temperature, ...
    default: str  # the safe default, kept unless the evidence is beyond noise
    chosen: str
    metric: str  # what a candidate gains per image, e.g. "validation log loss"
    n: int  # held-out images the evidence rests on
    level: float = LEVEL
    # candidate -> {"estimate": mean gain per image over the default, "interval": [lo, hi]}
    candidates: dict = field(default_factory=dict)
    note: str = ""

    def to_record(self):
        return asdict(self)

    def line(self):
        """One line for the console and the report."""
        parts = [
            f"{c} {v['estimate']:+.4f} [{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}]"
            for c, v in self.candidates.items()
        ]
        evidence = f"; gain in {self.metric} over {self.default}, {self.level:.0%} interval: "
        return (
            f"{self.name}: {self.chosen} (default {self.default}, n={self.n}"
            + (evidence + ", ".join(parts) if parts else "")
            + (f"; {self.note}" if self.note else "")
            + ")"
        )


def choose_with_margin(name, default, gains, metric, level=LEVEL, min_images=MIN_IMAGES):
    """The default, or the candidate whose per-image gain over it is beyond noise.

    Args:
        gains: candidate -> per-image gain over the default ``(N,)`` on the same held-out
            images (positive = better), nearest the default first.

    A candidate qualifies when the lower end of its paired interval is above zero and its
    mean gain at least MIN_EFFECT. Candidates are taken in order, as steps away from the
    default: a qualifying one replaces the one chosen so far only when its gain over that
    one is beyond noise as well (the largest mean among qualifying ones would follow the
    noise between near-equal candidates). Fewer than ``min_images`` images: the default,
    with a note."""
    n = len(next(iter(gains.values()))) if gains else 0
    if n < min_images:
        note = f"only {n} held-out images (< {min_images}): default kept"
        return Choice(name, default, default, metric, n, level, {}, note)
    candidates, best, best_gain, passed_over = {}, default, None, []
    for candidate, gain in gains.items():
        gain = np.asarray(gain, dtype=np.float64)
        mean, low, high = paired_interval(gain, level)
        candidates[candidate] = {"estimate": mean, "interval": [low, high]}
        if not _beyond_noise(mean, low):
            continue
        if best == default:  # the first step: its gain over the default is the evidence
            best, best_gain = candidate, gain
            continue
        step, step_low, _ = paired_interval(gain - best_gain, level)
        if _beyond_noise(step, step_low):
            best, best_gain = candidate, gain
        else:
            passed_over.append(f"{candidate} is not better than {best} beyond noise "
                               f"({step:+.4f} [{step_low:+.4f}, ...])")  # fmt: skip
    note = "; ".join(passed_over)
    if best == default:
        note = "no candidate better beyond noise: default kept"
    return Choice(name, default, best, metric, n, level, candidates, note)


def _beyond_noise(mean, low):
    return low > 0 and mean >= MIN_EFFECT
