"""The submitted ensemble as an MLflow ``python_function`` model (logged by ``--mlflow``):

    model = mlflow.pyfunc.load_model("runs:/<run id>/ensemble")
    table = model.predict(["photo.jpg", "more/"])   # or a DataFrame with an "image" column
    table["label"]                                   # the labels the submission gives

It predicts with :class:`~ripik_clf.predict.ensemble.Ensemble` (same members, weights,
TTA and temperature as ``ensemble.py``); an input that cannot be predicted gets an empty
label and its reason, like ``Ensemble.predict``.
"""

import mlflow.pyfunc
import pandas as pd


class EnsembleModel(mlflow.pyfunc.PythonModel):
    """Loads the packaged ensemble (:func:`~ripik_clf.predict.ensemble.package_ensemble`)
    from the model's ``ensemble`` artifact."""

    def load_context(self, context):
        from ripik_clf.predict.ensemble import Ensemble

        self.ensemble = Ensemble.load(context.artifacts["ensemble"])

    # The hint is MLflow's "no schema" type (it warns without a hint): this model takes
    # several kinds of input (paths, folders, arrays, a DataFrame) and checks them itself.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """A table with a row per input: ``image``, ``label``, ``reason`` (empty unless
        it failed) and a probability column per class."""
        result = self.ensemble.predict(_inputs(model_input))
        failed = iter(reason for _, reason in result.failures)  # in row order
        table = pd.DataFrame(result.probabilities, columns=result.classes)
        table.insert(0, "image", result.names)
        table.insert(1, "label", [label or "" for label in result.labels])
        table.insert(2, "reason", ["" if label else next(failed) for label in result.labels])
        return table


def _inputs(model_input):
    """Paths or arrays from what MLflow hands over: a DataFrame (its ``image`` column,
    else its first), a Series, a NumPy stack of images, or a list."""
    if isinstance(model_input, pd.DataFrame):
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        return model_input[column].tolist()
    if isinstance(model_input, pd.Series):
        return model_input.tolist()
    return model_input
