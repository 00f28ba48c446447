"""Experiments: one composed config -> one trained net -> one tracked run, for single runs and sweep jobs."""
