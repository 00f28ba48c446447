"""The implementations the benchmark times against netsweep, each training the same net for one epoch.

Every contender gets the same float32 data and split, the same 784-256-10 net, batch size, learning rate
and weight decay, and returns the wall time of one training epoch (shuffle included, evaluation not).
"""

import time

import numpy as np


def _shuffled_batches(n, batch_size, rng):
    order = rng.permutation(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


# --- the assignment's own formulation ---------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assignment_epoch(X, y, hidden, k, batch_size, lr, decay, rng) -> float:
    """The report's formulation, rewritten: float64 throughout, one-hot targets built per batch,
    softmax evaluated twice (for the cost and for d_out), the ReLU indicator materialised as bool then
    int copies, bias gradients as products with a column of ones, and a plain SGD update."""
    d = X.shape[1]
    X = X.astype(np.float64)
    W1 = rng.normal(0, np.sqrt(2 / (d + hidden)), (d, hidden))
    b1 = np.zeros((1, hidden))
    W2 = rng.normal(0, np.sqrt(4 / (hidden + k)), (hidden, k))
    b2 = np.zeros((1, k))
    started = time.perf_counter()
    for index in _shuffled_batches(len(X), batch_size, rng):
        Xb, n = X[index], len(index)
        targets = np.zeros((n, k))
        targets[np.arange(n), y[index]] = 1
        pre = Xb @ W1 + b1
        act = np.maximum(pre, 0)
        out = act @ W2 + b2
        penalty = decay * (np.sum(W1**2) + np.sum(W2**2))
        _cost = np.sum(-np.log(_softmax(out)) * targets) / n + penalty
        d_out = _softmax(out) - targets
        indicator = np.array(np.array(act, copy=True, dtype=bool), dtype=int)
        back = np.multiply(d_out @ W2.T, indicator)
        d_w1 = (back.T @ Xb).T / n + 2 * decay * W1
        d_b1 = (back.T @ np.ones((n, 1))).T / n
        d_w2 = (d_out.T @ act).T / n + 2 * decay * W2
        d_b2 = (d_out.T @ np.ones((n, 1))).T / n
        W1, b1, W2, b2 = W1 - lr * d_w1, b1 - lr * d_b1, W2 - lr * d_w2, b2 - lr * d_b2
    return time.perf_counter() - started


# --- PyTorch, eager, CPU ----------------------------------------------------------------------------------


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_epoch(X, y, hidden, k, batch_size, lr, decay, rng) -> float:
    """The same net and update in PyTorch eager mode: Linear-ReLU-Linear, cross-entropy, SGD with the
    decay term's gradient 2·c·W on the weights only."""
    import torch

    torch.manual_seed(int(rng.integers(1 << 31)))
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, k))
    weights = [model[0].weight, model[2].weight]
    biases = [model[0].bias, model[2].bias]
    optimizer = torch.optim.SGD(
        [{"params": weights, "weight_decay": 2 * decay}, {"params": biases, "weight_decay": 0.0}], lr=lr
    )
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    started = time.perf_counter()
    for index in _shuffled_batches(len(X), batch_size, rng):
        index = torch.from_numpy(index)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(Xt[index]), yt[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


# --- scikit-learn ----------------------------------------------------------------------------------------


def sklearn_epoch(X, y, hidden, k, batch_size, lr, decay, rng) -> float:
    """scikit-learn's MLPClassifier, plain SGD (no momentum), one pass over the data.

    Its L2 term is alpha/(2·batch) · ‖W‖² per batch, so alpha = 2·c·batch matches the cost's c·‖W‖².
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        solver="sgd",
        batch_size=batch_size,
        learning_rate_init=lr,
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=2 * decay * batch_size,
        max_iter=1,
        shuffle=True,
        random_state=int(rng.integers(1 << 31)),
        tol=0.0,
        n_iter_no_change=1000,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return time.perf_counter() - started
