"""`python -m src.predict <model> <images.npz>`: predict with a trained net, and score it when labels are given.

<model> is a run id, `runs:/<run id>/model` or `models:/<name>@<alias>` (e.g. a sweep's registered winner).
The .npz holds the images (`X_test`, `X` or `images`: any of (n, d) or (n, h, w), uint8 0-255 or floats in
[0, 1]) and optionally their labels (`y_test`, `y` or `labels`); it is read with allow_pickle=False.
Predictions of a net trained on Fashion-MNIST are also said by class name (when the model is a run's).
"""

import argparse
import gc
import sys
import zipfile
from pathlib import Path

import numpy as np

from src.errors import EXIT_USER_ERROR, first_line
from src.tracking import names
from src.tracking.api import Store
from src.tracking.opening import open_existing_store, resolve_uri

IMAGE_KEYS = ("X_test", "X", "images")
LABEL_KEYS = ("y_test", "y", "labels")


def read_images(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) from an .npz, naming the file and the problem when it cannot."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = next((archive[k] for k in IMAGE_KEYS if k in archive.files), None)
            labels = next((archive[k] for k in LABEL_KEYS if k in archive.files), None)
            found = archive.files
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LookupError(f"{path}: not a readable .npz of images ({exc})") from None
    if images is None:
        raise LookupError(f"{path}: holds {found}, none of {', '.join(IMAGE_KEYS)}")
    if labels is not None and len(labels) != len(images):
        raise LookupError(f"{path}: {len(labels)} labels for {len(images)} images")
    return images, labels


def model_uri(store: Store, given: str) -> str:
    """`given` as a model URI; a bare run id is checked to be a run of `store` that saved a model."""
    if ":" in given or "/" in given:
        return given
    try:
        run = store.run(given)
    except Exception:
        raise LookupError(
            f"no run {given!r} in {store.uri}: give a run id of that store (--tracking-uri), "
            "runs:/<run id>/model or models:/<name>@<alias>"
        ) from None
    if run.tags.get(names.ROLE) == names.ROLE_SWEEP:
        with_model = [r for r in (run.tags.get("winner.run_ids") or "").split() if store.artifacts(r, names.MODEL)]
        raise LookupError(
            f"run {given} is the parent of sweep {run.tags.get(names.SWEEP_ID)}, which has no model"
            + (f"; its winner's is in run {with_model[0]}" if with_model else "")
        )
    if not store.artifacts(given, names.MODEL):
        raise LookupError(
            f"run {given} saved no model ({run.outcome.value}; runs save one when they finish with "
            "tracking.log_model=true)"
        )
    return given


def class_names(store: Store, given: str, classes: int) -> tuple[str, ...] | None:
    """The names of the `classes` classes of the data the model at `given` was trained on, when that is a
    run's model (a run id or runs:/<run id>/...) on a data source with named classes; else None."""
    run_id = given.removeprefix("runs:/").split("/")[0] if given.startswith("runs:/") or ":" not in given else ""
    if not run_id:
        return None
    try:
        source = store.run(run_id).params.get(names.DATA_NAME, "")
    except Exception:  # a model URI that names no run of this store
        return None
    found = names.CLASS_NAMES.get(source)
    return found if found is not None and len(found) == classes else None


def counts_text(predicted: np.ndarray, classes: int, labels: tuple[str, ...] | None) -> str:
    """'predicted 10 images: 0 T-shirt/top: 3, 9 Ankle boot: 7' (classes without a prediction left out)."""
    counts = np.bincount(predicted, minlength=classes)
    shown = [f"{k} {labels[k]}: {n}" if labels else f"{k}: {n}" for k, n in enumerate(counts) if n]
    return f"predicted {len(predicted)} images: " + ", ".join(shown)


def first_text(predicted: np.ndarray, labels: tuple[str, ...] | None, shown: int = 20) -> str:
    first = predicted[:shown]
    return "first predictions: " + (
        ", ".join(f"{k} ({labels[k]})" for k in first) if labels else " ".join(map(str, first))
    )


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run id, runs:/<run id>/model or models:/<name>@<alias>")
    parser.add_argument("images", type=Path, help="an .npz of images (and labels)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    parser.add_argument("--out", type=Path, help="write the predictions (and class probabilities) as CSV here")
    args = parser.parse_args(argv)
    try:
        images, labels = read_images(args.images)
        store = open_existing_store(resolve_uri(args.tracking_uri))
        net = store.load_model(model_uri(store, args.model))  # takes any layout, unlike MLflow's input check
        table = net.table(images)
        classes = table.shape[1] - 1
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(
                f"{args.images}: labels from {labels.min()} to {labels.max()}, but this net has "
                f"{classes} classes (0..{classes - 1})"
            )
    except Exception as exc:  # a missing run, an unknown model, an unreadable file, images of another size
        print(f"netsweep: {first_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    predicted = table["label"].to_numpy()
    named = class_names(store, args.model, classes)
    if named:
        table.insert(1, "class", [named[k] for k in predicted])
    print(counts_text(predicted, classes, named))
    print(first_text(predicted, named))
    if labels is not None:
        right = int(np.count_nonzero(predicted == labels))
        print(f"accuracy {right / len(labels):.4f} ({right} of {len(labels)} right)")
    if args.out:
        table.to_csv(args.out, index_label="image")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    code = main()
    gc.freeze()  # the command is done: skip the interpreter's final garbage collection (~1 s with mlflow)
    sys.exit(code)
