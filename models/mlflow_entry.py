"""MLflow 'models from code' entry point: MLflow stores this file instead of a pickled object."""

import mlflow.models

from models.pyfunc import OmnirecPyfunc

mlflow.models.set_model(OmnirecPyfunc())
