"""Sweeps: plan a batch of Hydra jobs, resume what is done, dispatch the rest to a worker pool, reconcile
what came back, report progress; the sweep policy and the pool (their Protocols in policy.py) and the
tracking store are collaborators passed in."""
