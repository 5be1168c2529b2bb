"""The ensemble's one combiner (predict/combiner.py): fit, apply, to_keras, to_record,
and that nothing else rebuilds the vote."""

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ripik_clf import workdir as wd
from ripik_clf.predict.combiner import SoftVote

REPO = Path(__file__).resolve().parents[1]


def _softmaxes(rng, families=3, images=40, classes=5, scale=2.0):
    logits = rng.normal(0, scale, (families, images, classes))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _settings(**kw):
    return SimpleNamespace(**({"member_weights": [], "select": "bagged"} | kw))


def test_apply_is_the_weighted_mean_then_the_temperature_and_never_moves_the_vote():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = _softmaxes(rng)
        weights = rng.uniform(0.1, 3, 3)
        temperature = float(rng.uniform(0.3, 5))
        combiner = SoftVote(tuple(weights), temperature)
        mean = np.tensordot(weights / weights.sum(), p, axes=1)
        assert np.allclose(combiner.vote(p), mean)
        scaled = mean ** (1 / temperature)
        assert np.allclose(combiner.apply(p), scaled / scaled.sum(1, keepdims=True))
        assert (combiner.apply(p).argmax(1) == mean.argmax(1)).all()


def test_a_record_round_trip_through_ensemble_json_gives_the_same_combiner():
    combiner = SoftVote((0.25, 0.75), 1.7)
    definition = wd.EnsembleDefinition(
        members=[], families=["a", "b"], tta="none", classes=["x", "y"], **combiner.to_record()
    )
    again = wd.EnsembleDefinition.from_json(definition.to_json())
    assert SoftVote.from_record(again) == combiner


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_the_keras_graph_gives_what_apply_gives(temperature):
    import keras

    rng = np.random.default_rng(1)
    p = _softmaxes(rng).astype("float32")
    combiner = SoftVote((1.0, 2.0, 0.5), temperature)
    tensors = [keras.ops.convert_to_tensor(f) for f in p]
    got = keras.ops.convert_to_numpy(combiner.to_keras(tensors))
    assert np.abs(got - combiner.apply(p)).max() < 1e-5
    plain = keras.ops.convert_to_numpy(combiner.to_keras(tensors, calibrated=False))
    assert np.abs(plain - combiner.vote(p)).max() < 1e-5


def test_fit_keeps_given_weights_and_equal_ones_without_selection():
    rng = np.random.default_rng(2)
    p, y = _softmaxes(rng, families=2), rng.integers(0, 5, 40)
    given, _, _ = SoftVote.fit(p, y, _settings(member_weights=[3, 1]), ["a", "b"])
    assert given.weights == (3.0, 1.0)
    equal, choices, _ = SoftVote.fit(p, y, _settings(select="none"), ["a", "b"])
    assert equal.weights == (1.0, 1.0) and [c.name for c in choices] == ["temperature"]


def test_fit_keeps_temperature_one_for_fold_families_and_says_why():
    rng = np.random.default_rng(3)
    p = _softmaxes(rng, families=2, images=300, scale=6.0)  # over-confident, often wrong
    y = rng.integers(0, 5, 300)
    free, _, _ = SoftVote.fit(p, y, _settings(select="none"), ["a", "b"])
    folded, choices, _ = SoftVote.fit(p, y, _settings(select="none"), ["a", "b"], folded=True)
    assert free.temperature > 1.5  # the evidence is there: fitted
    assert folded.temperature == 1.0 and "k-fold" in choices[-1].note


def test_a_perfect_validation_set_keeps_temperature_one():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 100)
    p = np.full((2, 100, 5), 0.1)
    p[:, np.arange(100), y] = 0.6  # right everywhere, not sure of it
    combiner, _, _ = SoftVote.fit(p, y, _settings(select="none"), ["a", "b"])
    assert combiner.temperature == 1.0


def _names_used(path):
    tree = ast.parse(path.read_text())
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    }


# The soft vote's primitive is used by the combiner and by the selection rules it calls
# (they score candidate weights); everything else goes through SoftVote.
VOTE_PRIMITIVE_USERS = {"ripik_clf/predict/voting.py", "ripik_clf/predict/combiner.py"}


def test_no_module_outside_the_combiner_rebuilds_the_vote():
    found = {
        path.relative_to(REPO).as_posix()
        for folder in ("ripik_clf", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
        if "soft_vote" in _names_used(path)
    }
    assert found == VOTE_PRIMITIVE_USERS
