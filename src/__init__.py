"""netsweep: train, sweep, compare and reproduce a one-hidden-layer NumPy net (Hydra configs, MLflow runs)."""
