"""Write an MLServer model repository serving the same iris SVC as the generated service.

    python bench/mlserver_model.py OUT_DIR HTTP_PORT PARALLEL_WORKERS

Run with MLServer's virtualenv (it has scikit-learn); the classifier comes from the same training
code as sample_models/iris, so both servers answer with the same model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from serving import mlserver_settings  # noqa: E402 - beside this file
from train_sample_models import build_iris  # noqa: E402 - the training code lives in scripts/


def main() -> None:
    """Dump the classifier and MLServer's settings."""
    out, port, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    model_dir = out / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(build_iris().classifier, model_dir / "model.joblib")
    settings = {**mlserver_settings(port), "parallel_workers": workers}
    (out / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model))


if __name__ == "__main__":
    main()
