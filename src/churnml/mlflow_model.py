"""Where models logged before churnml 0.1's stage packages find their pyfunc.

A logged MLflow model keeps the code file that builds its pyfunc, and those files say
``from churnml.mlflow_model import ChurnPyfunc``; ``mlflow.pyfunc.load_model`` on an older champion
imports this module. New models import ``churnml.training.mlflow_model`` (the one home of the class);
churnml's own loader reads only a model's JSON files and never needs this.
"""

from churnml.training.mlflow_model import ChurnPyfunc

__all__ = ["ChurnPyfunc"]
