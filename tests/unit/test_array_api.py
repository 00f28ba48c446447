"""The packed numerics on any array-API backend: run on NumPy and on array-api-strict (which refuses anything
outside the standard), checked against the reference `cost_grad`, central differences, `evaluate` and each
optimizer's own step, slice by slice."""

import importlib.util

import numpy as np
import pytest

import src.nn.pack as pack_module
from src.nn.backend import NUMPY, Backend, backend, namespace, to_numpy
from src.nn.mlp import cost_grad, decay_penalty, init_params
from src.nn.mlp import evaluate as evaluate_one
from src.nn.optim import build_optimizer
from src.nn.pack import Member, fit_pack
from src.nn.packed import (
    Batch,
    all_finite,
    data_cost_grad,
    evaluate,
    pack_shape,
    penalties,
    stack,
    stack_params,
    unstack,
)
from src.nn.packed_optim import pack_optimizers
from src.nn.rows import PixelRows
from src.nn.train import EPOCH_METRICS, Progress, TrainingData, TrainSettings

BACKENDS = ["numpy", "array_api_strict"]
DECAYS = [1e-2, 0.0, 3e-3]


def _net(rng, K=3, d=6, H=5, k=4, dtype=np.float64):
    """K configs' parameters (biases not zero, so their gradients are checked too) and a batch of each."""
    members = []
    for _ in range(K):
        params = init_params(d, H, k, rng, dtype=dtype)
        params["b1"] = rng.normal(size=H).astype(dtype)
        params["b2"] = rng.normal(size=k).astype(dtype)
        members.append(params)
    n = 7
    X = [rng.random((n, d)).astype(dtype) for _ in range(K)]
    y = [rng.integers(0, k, size=n) for _ in range(K)]
    return members, X, y


def _batch(be: Backend, X, y, k, dtype):
    targets = [np.eye(k, dtype=dtype)[labels] for labels in y]
    return Batch(stack(X, be), be.asarray(np.stack(y).astype(np.int64)[..., None]), stack(targets, be))


def _packed_cost(be, packed, batch, n):
    scale = be.asarray(np.full((len(DECAYS), 1, 1), 1 / n))
    mean_ce, _, grads = data_cost_grad(packed, batch, scale)
    return to_numpy(mean_ce + penalties(packed, be.asarray(np.array(DECAYS)))), grads


@pytest.mark.parametrize("name", BACKENDS)
def test_packed_cost_and_gradient_are_the_reference_cost_grads_of_each_slice(rng, name):
    be = backend(name)
    members, X, y = _net(rng)
    packed = stack_params(members, be)
    cost, grads = _packed_cost(be, packed, _batch(be, X, y, 4, np.float64), len(y[0]))
    shapes = {key: value.shape for key, value in members[0].items()}
    for k, (params, grad) in enumerate(zip(members, unstack(grads, shapes), strict=True)):
        expected_cost, expected = cost_grad(params, X[k], y[k], DECAYS[k])
        assert cost[k] == pytest.approx(expected_cost, rel=1e-12)
        for key in ("W1", "W2"):  # the packed pass leaves the decay term to the optimizer
            grad[key] = grad[key] + 2 * DECAYS[k] * params[key]
        for key, value in expected.items():
            np.testing.assert_allclose(grad[key], value, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", BACKENDS)
def test_packed_gradient_against_central_differences_and_slices_apart(rng, name):
    be = backend(name)
    members, X, y = _net(rng, K=3, d=3, H=4, k=3)
    batch, n = _batch(be, X, y, 3, np.float64), len(y[0])
    host = {key: np.stack([m[key].reshape(pack_shape(m[key].shape)) for m in members]) for key in members[0]}
    _, grads = _packed_cost(be, {key: be.asarray(v) for key, v in host.items()}, batch, n)
    analytic = {key: to_numpy(g) for key, g in grads.items()}
    eps = 1e-6
    for key, value in host.items():
        for index in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[index] += eps
            down[index] -= eps
            plus = _packed_cost(be, {**{k: be.asarray(v) for k, v in host.items()}, key: be.asarray(up)}, batch, n)[0]
            minus = _packed_cost(be, {**{k: be.asarray(v) for k, v in host.items()}, key: be.asarray(down)}, batch, n)[
                0
            ]
            slope = (plus - minus) / (2 * eps)
            config = index[0]
            exact = analytic[key][index] + (2 * DECAYS[config] * value[index] if key.startswith("W") else 0)
            assert slope[config] == pytest.approx(exact, rel=1e-5, abs=1e-8), (key, index)
            others = [k for k in range(len(DECAYS)) if k != config]
            assert np.all(slope[others] == 0), (key, index)  # a config's weights move only its own cost


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_evaluation_is_mlp_evaluate_of_each_slice_exactly(rng, name, dtype):
    be = backend(name)
    members, _, _ = _net(rng, dtype=dtype)
    X, y = rng.random((300, 6)).astype(dtype), rng.integers(0, 4, size=300)
    ce, acc = evaluate(stack_params(members, be), be.asarray(X), be.asarray(y.astype(np.int64)))
    for k, params in enumerate(members):
        assert (ce[k], acc[k]) == evaluate_one(params, X, y, 0.0)
    packed = stack_params(members, be)
    assert to_numpy(all_finite(packed)).tolist() == [True, True, True]
    members[1]["b2"][0] = np.inf
    assert to_numpy(all_finite(stack_params(members, be))).tolist() == [True, False, True]


KNOBS = {
    "sgd": [dict(lr=0.1, decay=1e-2), dict(lr=0.3, decay=0.0), dict(lr=0.05, decay=1e-3)],
    "momentum": [
        dict(lr=0.1, decay=1e-2, momentum=0.9),
        dict(lr=0.3, decay=0.0, momentum=0.5),
        dict(lr=0.05, decay=1e-3),
    ],
    "adam": [
        dict(lr=0.01, decay=1e-2),
        dict(lr=0.003, decay=0.0, beta1=0.8, beta2=0.99, eps=1e-6),
        dict(lr=0.1, decay=1e-3),
    ],
}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("optimizer", list(KNOBS))
def test_packed_optimizer_steps_are_each_optimizers_own_steps_bit_for_bit(rng, name, optimizer):
    be = backend(name)
    members, _, _ = _net(rng, dtype=np.float32)
    alone = [
        build_optimizer(optimizer, params, **knobs) for params, knobs in zip(members, KNOBS[optimizer], strict=True)
    ]
    copies = [{key: value.copy() for key, value in params.items()} for params in members]
    packed = stack_params(copies, be)
    stepper = pack_optimizers(
        [build_optimizer(optimizer, p, **knobs) for p, knobs in zip(copies, KNOBS[optimizer], strict=True)],
        packed,
        np.dtype(np.float32),
    )
    stepper.begin_epoch([7, 7, 3])
    shapes = {key: value.shape for key, value in members[0].items()}
    for step in range(3):
        grads = [
            {key: rng.normal(size=value.shape).astype(np.float32) for key, value in params.items()}
            for params in members
        ]
        stepper.step(packed, {key: stack([g[key] for g in grads], be) for key in shapes}, step)
        for params, own, grad in zip(members, alone, grads, strict=True):
            own.step(params, grad)
    for params, got in zip(members, unstack(packed, shapes), strict=True):
        for key, value in params.items():
            assert np.array_equal(got[key], value), key
    state = stepper.state()
    for k, own in enumerate(alone):
        for key, value in own.state().items():
            assert np.array_equal(np.asarray(to_numpy(state[key])[k]).reshape(np.shape(value)), value), key


@pytest.mark.parametrize("optimizer", list(KNOBS))
def test_fit_pack_on_array_api_strict_is_fit_pack_on_numpy(rng, optimizer, monkeypatch):
    X, y = rng.random((150, 6)).astype(np.float32), rng.integers(0, 4, size=150)
    data = TrainingData(X[:100], y[:100], X[100:], y[100:])

    def members():
        out = []
        for seed, knobs in enumerate(KNOBS[optimizer]):
            params = init_params(6, 8, 4, np.random.default_rng(seed), dtype=np.float32)
            out.append(
                Member(params, build_optimizer(optimizer, params, **knobs), Progress.start(np.random.default_rng(seed)))
            )
        return out

    settings = TrainSettings(batch_size=16, epochs=2)
    strict_backend = backend("array_api_strict")
    strict = fit_pack(data, members(), settings=settings, backend=strict_backend)
    plain = fit_pack(data, members(), settings=settings, backend=NUMPY)
    # data of another library: the pack trains there without being told (array type in, array type out)
    on_its_arrays = TrainingData(
        *(strict_backend.asarray(a) for a in (data.X_train, data.y_train, data.X_val, data.y_val))
    )
    kinds, real = set(), pack_module.data_cost_grad
    monkeypatch.setattr(pack_module, "data_cost_grad", lambda p, b, s: kinds.add(namespace(b.X)) or real(p, b, s))
    inferred = fit_pack(on_its_arrays, members(), settings=settings)
    assert kinds == {strict_backend.xp}
    assert [r.history.metrics["val_loss"] for r in inferred] == [r.history.metrics["val_loss"] for r in plain]
    for a, b in zip(strict, plain, strict=True):
        assert all(a.history.metrics[m] == b.history.metrics[m] for m in EPOCH_METRICS[:-1])
        assert all(
            isinstance(a.params[key], np.ndarray) and np.array_equal(a.params[key], b.params[key]) for key in b.params
        )


def test_backends_by_name_and_arrays_back_to_the_host():
    assert backend("numpy") == NUMPY and NUMPY.name == "numpy"
    strict = backend("array_api_strict")
    moved = strict.asarray(np.arange(3.0))
    assert namespace(moved) is strict.xp and Backend.of(moved).xp is strict.xp
    assert isinstance(to_numpy(moved), np.ndarray) and to_numpy(moved).tolist() == [0.0, 1.0, 2.0]
    plain = np.ones(2)
    assert to_numpy(plain) is plain and NUMPY.asarray(plain) is plain  # NumPy stays where it is, uncopied
    with pytest.raises(ValueError, match="unknown array backend 'jax'"):
        backend("jax")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        backend("numpy", "cuda")


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="PyTorch is installed here")
def test_a_missing_gpu_library_says_how_to_install_it():
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'netsweep\[gpu\]'"):
        backend("torch", "cuda")


def test_penalties_are_the_decay_penalty_of_each_slice_and_exactly_zero_without_decay(rng):
    members, _, _ = _net(rng, dtype=np.float32)
    got = to_numpy(penalties(stack_params(members, NUMPY), np.array(DECAYS)))
    assert got.tolist() == [decay_penalty(params, decay) for params, decay in zip(members, DECAYS, strict=True)]
    assert got[1] == 0.0


@pytest.mark.parametrize("optimizer", list(KNOBS))
def test_fit_pack_on_pytorch_agrees_with_numpy_to_float32_rounding(rng, optimizer):
    """Another BLAS sums in another order, so the bits differ; measured on PyTorch 2.13 (CPU) over these 3 epochs:
    losses within 1e-6, accuracies equal. (Over 10 epochs of digits at hidden 256, the drift grows to 6e-4 in
    val_ce, 1.6e-3 in train_acc, with the same best epochs.) The bound here is 1e-4 on every loss."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    X, y = rng.random((300, 6)).astype(np.float32), rng.integers(0, 4, size=300)
    data = TrainingData(X[:200], y[:200], X[200:], y[200:])

    def members():
        out = []
        for seed, knobs in enumerate(KNOBS[optimizer]):
            params = init_params(6, 16, 4, np.random.default_rng(seed), dtype=np.float32)
            out.append(
                Member(params, build_optimizer(optimizer, params, **knobs), Progress.start(np.random.default_rng(seed)))
            )
        return out

    settings = TrainSettings(batch_size=16, epochs=3)
    on_torch = fit_pack(data, members(), settings=settings, backend=backend("torch", "cpu"))
    plain = fit_pack(data, members(), settings=settings)
    for a, b in zip(on_torch, plain, strict=True):
        assert a.best_epoch == b.best_epoch
        for metric in ("train_loss", "val_loss", "val_ce"):
            np.testing.assert_allclose(a.history.metrics[metric], b.history.metrics[metric], atol=1e-4, rtol=0)
        for metric in ("train_acc", "val_acc"):
            assert np.max(np.abs(np.subtract(a.history.metrics[metric], b.history.metrics[metric]))) <= 2 / 100


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", BACKENDS)
def test_a_pack_on_uint8_pixel_rows_trains_on_the_floats_they_scale_to(rng, name, dtype):
    """Integer rows stay integers on the device; each batch and each validation chunk is scaled there, to
    the bits a NumPy fit on the scaled floats gets (float32 scaling, then the net's dtype)."""
    images = rng.integers(0, 256, size=(150, 6), dtype=np.uint8)
    rows, y = PixelRows.of(images, 255), rng.integers(0, 4, size=150)
    floats = np.multiply(images, np.float32(1 / 255), dtype=np.float32)  # what the data layer used to hold
    as_rows = TrainingData(PixelRows(images[:100], rows.scale), y[:100], PixelRows(images[100:], rows.scale), y[100:])
    as_floats = TrainingData(floats[:100], y[:100], floats[100:], y[100:])

    def members():
        out = []
        for seed, knobs in enumerate(KNOBS["momentum"]):
            params = init_params(6, 8, 4, np.random.default_rng(seed), dtype=dtype)
            optimizer = build_optimizer("momentum", params, **knobs)
            out.append(Member(params, optimizer, Progress.start(np.random.default_rng(seed))))
        return out

    settings = TrainSettings(batch_size=16, epochs=2)
    on_rows = fit_pack(as_rows, members(), settings=settings, backend=backend(name))
    on_floats = fit_pack(as_floats, members(), settings=settings, backend=NUMPY)
    for a, b in zip(on_rows, on_floats, strict=True):
        assert all(a.history.metrics[m] == b.history.metrics[m] for m in EPOCH_METRICS[:-1])
        assert all(np.array_equal(a.params[key], b.params[key]) for key in b.params)
    if name != "numpy":  # rows already on a device: the pack trains there without being told
        strict = backend(name)
        moved = TrainingData(as_rows.X_train.to(strict.asarray), y[:100], as_rows.X_val.to(strict.asarray), y[100:])
        inferred = fit_pack(moved, members(), settings=settings)
        assert [r.history.metrics["val_loss"] for r in inferred] == [r.history.metrics["val_loss"] for r in on_floats]
