"""The MLflow face of a ChurnModel: a pyfunc that returns calibrated churn probabilities.

MLflow's own XGBoost pyfunc returns class labels; this one returns ``P(churn)`` per row, so
``mlflow.pyfunc.load_model("models:/churn-model@champion").predict(frame)`` is what a scorer wants.
The model is logged "from code" with the ChurnModel's plain files as artifacts: nothing is pickled,
and ``churnml.training.model.load_model(uri)`` gets the ChurnModel itself back from any model URI.
Loading needs churnml installed: the model's ``requirements.txt`` pins ``churnml==<its version>`` with the
libraries it was trained with, so an environment made from that file alone loads and predicts
(tests/model/test_wheel.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import AnyType, ColSpec, Schema

from churnml.training.model import ChurnModel

ARTIFACT = "churn_model"
EVALUATED_ARTIFACT = "evaluated_model"  # the model before the refit on every label (the tested one)
# The file MLflow runs to build the pyfunc when loading; written at log time, not imported by churnml.
MODEL_CODE = """\
import mlflow
from churnml.training.mlflow_model import ChurnPyfunc

mlflow.models.set_model(ChurnPyfunc())
"""


class ChurnPyfunc(PythonModel):
    """Pyfunc wrapper: ``predict`` validates and casts the input, returns calibrated probabilities."""

    model: ChurnModel

    def load_context(self, context: PythonModelContext) -> None:
        self.model = ChurnModel.load(context.artifacts[ARTIFACT])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> np.ndarray:
        return self.model.predict_proba(pd.DataFrame(model_input))


def input_frame(model: ChurnModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The input as a client sends it: feature columns, categoricals as text (JSON has no categories)."""
    prepared = model.prepare(frame)
    for column in model.columns:
        if column.dtype == "category":
            values = prepared[column.name].astype(object)
            prepared[column.name] = values.where(values.notna(), None)
    return prepared


def signature(model: ChurnModel, example: pd.DataFrame) -> ModelSignature:
    """Required columns, typed ``any``: MLflow would refuse JSON integers for a double column ("cannot
    safely convert int64") and category dtypes for a string one. Types are checked by
    ``ChurnModel.prepare`` instead, against the dtypes in ``feature_spec.json`` (also in the MLmodel
    metadata), with errors naming the column."""
    inputs = Schema([ColSpec(AnyType(), c.name) for c in model.columns])
    return ModelSignature(
        inputs=inputs, outputs=infer_signature(example, model.predict_proba(example)).outputs
    )


def requirements() -> list[str]:
    """Pinned runtime requirements of the pyfunc: churnml itself (its code builds the pyfunc) and the
    libraries the model was trained with."""
    from importlib.metadata import version

    from churnml import __version__

    return [f"churnml=={__version__}"] + [
        f"{name}=={version(name)}"
        for name in ("mlflow", "xgboost", "pandas", "numpy", "scikit-learn", "pyarrow")
    ]


def log_model(
    model: ChurnModel,
    example_rows: pd.DataFrame,
    name: str = "model",
    evaluated: ChurnModel | None = None,
    **kwargs: Any,
) -> mlflow.models.model.ModelInfo:
    """Log ``model`` as a pyfunc in the active run (signature and input example from ``example_rows``);
    ``evaluated``, the model the test figures describe, travels with it as a second artifact."""
    example = input_frame(model, example_rows)
    # MLflow writes the example with json.dumps: a NaN would be the bare word NaN, which is not JSON.
    example = example.astype(object).where(example.notna(), None)
    with tempfile.TemporaryDirectory(prefix="churnml-model-") as tmp:
        files = model.save(Path(tmp) / ARTIFACT)
        artifacts = {ARTIFACT: str(files)}
        if evaluated is not None:
            artifacts[EVALUATED_ARTIFACT] = str(evaluated.save(Path(tmp) / EVALUATED_ARTIFACT))
        code = Path(tmp) / "churn_pyfunc.py"
        code.write_text(MODEL_CODE)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts=artifacts,
            signature=signature(model, example),
            input_example=example,
            pip_requirements=requirements(),
            metadata={"feature_dtypes": {c.name: c.dtype for c in model.columns}},
            **kwargs,
        )
