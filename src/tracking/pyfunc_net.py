"""The trained net as an MLflow `pyfunc` model ("models from code"): this file is copied into the model, so
it imports nothing of netsweep's and serves without netsweep installed (numpy, pandas, threadpoolctl and
mlflow only). It computes with one BLAS thread, as the run scored its test set: results then do not depend
on the machine's thread count, and predicting the run's test images gives exactly its test_acc.

`predict` takes raw pixels as the training data held them: an array of shape (n, d) or (n, h, w), uint8
0-255 (or 0-16 for scikit-learn's digits) or floats in [0, 1], or a DataFrame of such rows. It returns the
predicted labels, or with `params={"probabilities": True}` a DataFrame of the label and each class's
probability. MLflow checks inputs against the model's signature first (the layout and type of the data the
run trained on); `python -m src.predict` converts other layouts before calling it.
"""

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from threadpoolctl import threadpool_limits

CHUNK = 8192  # rows per forward pass


class NetsweepNet(PythonModel):
    def load_context(self, context) -> None:
        with np.load(context.artifacts["weights"], allow_pickle=False) as weights:
            self.params = {name: weights[name] for name in ("W1", "b1", "W2", "b2")}
        with open(context.artifacts["input_format"]) as handle:
            self.format = json.load(handle)

    def rows(self, model_input) -> np.ndarray:
        """Raw pixels -> rows in [0, 1], scaled exactly as the run's data layer scaled them (in float32)."""
        X = model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else np.asarray(model_input)
        X = X.reshape(len(X), -1)
        if X.shape[1] != len(self.params["W1"]):
            shape = "x".join(map(str, self.format["image_shape"]))
            raise ValueError(
                f"images of {X.shape[1]} pixels each, but this net takes {len(self.params['W1'])} "
                f"({shape} images, as it was trained on)"
            )
        top = self.format["pixel_max"]
        if X.size and (X.min() < 0 or X.max() > top):
            raise ValueError(
                f"pixel values from {X.min()} to {X.max()}, but this net was trained on 0..{top} (or floats in [0, 1])"
            )
        if np.issubdtype(X.dtype, np.integer):
            X = np.multiply(X, np.float32(1 / self.format["pixel_max"]), dtype=np.float32)
        else:
            X = X.astype(np.float32, copy=False)
            if X.size and X.max() > 1:  # floats in raw units (0-255, or 0-16 for digits)
                X = np.multiply(X, np.float32(1 / self.format["pixel_max"]), dtype=np.float32)
        return X.astype(self.params["W1"].dtype, copy=False)

    def logits(self, X: np.ndarray) -> np.ndarray:
        out = []
        with threadpool_limits(limits=1, user_api="blas"):
            for start in range(0, len(X), CHUNK):
                h = np.maximum(X[start : start + CHUNK] @ self.params["W1"] + self.params["b1"], 0)  # (n,d)@(d,H)
                out.append(h @ self.params["W2"] + self.params["b2"])  # (n, H) @ (H, k) -> (n, k)
        return np.concatenate(out) if out else np.empty((0, len(self.params["b2"])))

    def predict(self, context, model_input: np.ndarray, params=None):  # ndarray: MLflow infers nothing from it
        z = self.logits(self.rows(model_input))
        labels = z.argmax(axis=1)
        if not (params and params.get("probabilities")):
            return labels
        proba = np.exp(z - z.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        table = pd.DataFrame(proba, columns=[f"p_{k}" for k in range(proba.shape[1])])
        table.insert(0, "label", labels)
        return table


mlflow.models.set_model(NetsweepNet())
