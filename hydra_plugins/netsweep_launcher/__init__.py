"""netsweep's Hydra launcher: `python -m src.run -m ...` sweeps through joblib, tracked in MLflow."""
