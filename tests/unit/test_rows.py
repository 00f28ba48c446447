"""Pixel rows held as stored (uint8) and scaled a batch or a chunk at a time give a net the very floats a
whole split scaled at once gave it: batches, evaluation chunks and whole fits, bit for bit."""

import numpy as np
import pytest

from src.config.schema import DigitsConfig
from src.data.loader import load_dataset
from src.nn.backend import backend
from src.nn.mlp import Workspace, evaluate, init_params, predict
from src.nn.optim import build_optimizer
from src.nn.rows import PixelRows, chunk_rows, take_rows
from src.nn.train import Progress, TrainingData, TrainSettings, fit


def whole_floats(images, pixel_max):
    """What the data layer held before: the whole split scaled at once."""
    return np.multiply(images, np.float32(1 / pixel_max), dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_and_a_chunk_of_uint8_rows_are_the_rows_of_the_scaled_split(rng, dtype):
    images = rng.integers(0, 256, size=(40, 5), dtype=np.uint8)  # 255: its scale is not exact in floats
    rows, floats = PixelRows.of(images, 255), whole_floats(images, 255)
    params = init_params(5, 3, 2, rng, dtype=dtype)
    workspace = Workspace(params, batch_size=8)
    index = rng.permutation(40)[:8]
    batch = workspace.load_batch(rows, index)
    assert batch.dtype == dtype and np.array_equal(batch, floats[index].astype(dtype))
    assert np.array_equal(workspace.load_batch(rows, index[:3]), floats[index[:3]].astype(dtype))  # a short batch
    assert np.array_equal(chunk_rows(rows, 8, 20, dtype), floats[8:20].astype(dtype))
    assert np.array_equal(np.asarray(rows), floats) and rows.float_nbytes == floats.nbytes
    kept = PixelRows.of(floats, 255)  # float rows are used as they are
    assert kept.scale is None and np.array_equal(workspace.load_batch(kept, index), floats[index].astype(dtype))
    strict = backend("array_api_strict")  # rows on a device: integers are told apart there too
    assert (
        PixelRows.of(strict.asarray(images), 255).scale == 1 / 255
        and PixelRows.of(strict.asarray(floats), 255).scale is None
    )
    on_device = take_rows(rows.to(strict.asarray), strict.asarray(index), strict.xp.float32)
    assert np.array_equal(np.asarray(on_device), floats[index])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fit_on_pixel_rows_is_the_fit_on_the_whole_scaled_split_bit_for_bit(dtype):
    ds = load_dataset(DigitsConfig(name="digits", val_fraction=0.15, test_fraction=0.2), 0)
    assert ds.X_train.stored.dtype == np.uint8 and ds.X_train.scale == 1 / 16
    as_floats = TrainingData(np.asarray(ds.X_train), ds.y_train, np.asarray(ds.X_val), ds.y_val)
    as_rows = TrainingData(ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    results = []
    for data in (as_rows, as_floats):
        params = init_params(64, 32, 10, np.random.default_rng(3), dtype=dtype)
        optimizer = build_optimizer("momentum", params, lr=0.05, decay=1e-4, momentum=0.9)
        settings = TrainSettings(batch_size=32, epochs=3)
        results.append(
            fit(params, data, optimizer=optimizer, settings=settings, progress=Progress.start(np.random.default_rng(4)))
        )
    on_rows, on_floats = results
    assert {k: v for k, v in on_rows.history.metrics.items() if k != "epoch_time_s"} == {
        k: v for k, v in on_floats.history.metrics.items() if k != "epoch_time_s"
    }
    assert all(np.array_equal(on_rows.params[k], on_floats.params[k]) for k in on_floats.params)
    test = evaluate(on_rows.params, ds.X_test, ds.y_test, 1e-4)
    assert test == evaluate(on_rows.params, np.asarray(ds.X_test), ds.y_test, 1e-4)
    assert np.array_equal(predict(on_rows.params, ds.X_test), predict(on_rows.params, np.asarray(ds.X_test)))
