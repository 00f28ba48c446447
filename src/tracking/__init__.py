"""Tracking: the only package that imports mlflow, behind the interface of api.py; it speaks netsweep's
terms (runs, outcomes, epochs, sweeps) and never hands out MLflow objects, status strings or filter syntax."""
