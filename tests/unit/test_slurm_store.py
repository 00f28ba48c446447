"""A SQLite store on a network filesystem is refused for Slurm jobs (one line: start a tracking server), and
bench/sqlite_writers.py, which measured why, counts what concurrent writers lose."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from src.errors import ConfigError
from src.sweep.pool import WorkerPool, network_filesystem
from src.sweep.settings import Backend

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs1:/export/home /home nfs4 rw,vers=4.2 0 0
/dev/sdb1 /home/alice/local\\040disk ext4 rw 0 0
mds@o2ib:/scratch /scratch lustre rw,flock 0 0
alice@login:/data /mnt/data fuse.sshfs rw 0 0
"""


@pytest.mark.parametrize(
    "path,kind",
    [
        ("/home/alice/runs", "nfs4"),
        ("/home", "nfs4"),
        ("/home/alice/local disk/runs", None),  # a local disk mounted inside the NFS home (the longest match)
        ("/homework", None),  # not under /home
        ("/scratch/alice", "lustre"),
        ("/mnt/data/x", "fuse.sshfs"),
        ("/tmp/x", None),
        ("/var/lib", None),
    ],
)
def test_the_filesystem_of_a_path_is_read_from_the_mount_table(path, kind):
    assert network_filesystem(Path(path), MOUNTS) == kind


def _pool(backend):
    pool = WorkerPool(SimpleNamespace(backend=backend, address=None, n_jobs=2), n_tasks=2)
    pool._client = SimpleNamespace(scheduler_info=lambda: {"workers": {"tcp://127.0.0.1:4000": {}}})
    return pool


def test_a_sqlite_store_on_a_network_filesystem_is_refused_for_slurm_jobs(monkeypatch, tmp_path):
    monkeypatch.setattr("src.sweep.pool.network_filesystem", lambda path: "nfs4")
    with pytest.raises(ConfigError) as refused:
        _pool(Backend.slurm).check_store(f"sqlite:///{tmp_path}/mlflow.db")
    message = str(refused.value)
    assert "\n" not in message and "network filesystem (nfs4)" in message and "MLFLOW_TRACKING_URI=http" in message
    _pool(Backend.slurm).check_store("http://login:5000")  # a server: fine wherever its file is
    _pool(Backend.dask).check_store(f"sqlite:///{tmp_path}/mlflow.db")  # Dask workers all on this machine
    monkeypatch.setattr("src.sweep.pool.network_filesystem", lambda path: None)
    _pool(Backend.slurm).check_store(f"sqlite:///{tmp_path}/mlflow.db")  # a local disk, jobs on this host


@pytest.mark.slow
def test_concurrent_writers_are_counted_and_lose_nothing_on_a_local_disk(tmp_path):
    from bench.sqlite_writers import measure

    row = measure(tmp_path, writers=2, runs=1, epochs=3, journal="wal")
    assert row["attempted"] == row["acked"] == 6 and row["errors"] == {}
    assert row["lost"] == 0 and row["integrity"] == "ok" and row["seconds"] is not None
