"""Pure-NumPy numerics: the net (mlp), its optimizers (optim) and the training loop (train)."""
