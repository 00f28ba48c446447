"""Configs: the schemas behind conf/, value checks, the config hash, run names and number formatting."""
