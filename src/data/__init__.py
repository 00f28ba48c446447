"""Data: readers (IDX, npz, digits), checks, the train/validation/test split -> `Dataset`, and the decoded
arrays a sweep shares with its workers."""
