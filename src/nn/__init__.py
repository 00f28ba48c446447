"""The numerics, on NumPy or any array-API backend: the net (mlp; packed for K configs at once), its optimizers
(optim, packed_optim), the training loops (train, pack) and the arrays they pass (arrays, backend)."""
