"""Pure-NumPy numerics: the net (mlp), its optimizers (optim), the training loop (train) and the types of
the arrays they pass (arrays)."""
