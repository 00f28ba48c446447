"""Tag and artifact names, defined once for whoever writes a run and whoever reads it back."""

# Tags every run carries
OUTCOME = "outcome"  # an `Outcome` value
FAILURE_REASON = "failure_reason"  # why a run ended other than finished (first 5000 characters)
PAUSED_AT = "netsweep.paused_at"  # the rung (epoch) a sweep's run waits at, from its checkpoint
CONFIG_HASH = "config_hash"  # the hash of the config's results-relevant settings (resume matches on it)
GROUP_HASH = "group_hash"  # the same without the seed: equal across the replicates of one setting
# On a sweep's child that stands for a result an earlier sweep trained: that config's hash (not CONFIG_HASH,
# which resume reads to find results, and this run is only a link to one)
REUSED_FROM = "netsweep.reused_from"  # on a child that stands for a result an earlier sweep trained
REUSED_CONFIG_HASH = "netsweep.reused_config_hash"
DATA_FINGERPRINT = "data_fingerprint"
OVERRIDES = "overrides"  # the command line's overrides of this config
SLURM_JOB_ID = "slurm_job_id"  # the Slurm job a run trained in (the last one, for a run continued in another)
SWEEP_ID = "sweep_id"  # on a sweep's parent and on every run it trained
ROLE = "netsweep.role"  # "sweep" on a sweep's parent run
ROLE_SWEEP = "sweep"
SWEEP_OVERRIDES = "sweep_overrides"  # on a parent: the sweep's command line
SWEEP_HOST = "netsweep.host"  # on a parent: the machine and process running the sweep now (or last)
SWEEP_PID = "netsweep.pid"
SWEEP_PROCESS_STARTED = "netsweep.process_started"  # that process's start time, so a reused pid is not mistaken for it

# Artifacts
MANIFEST = "sweep.json"  # on a parent: which config trained in which run, and the sweep's defaults
FIGURE_ONE = "figure1.png"
WEIGHTS = "weights.npz"
MODEL = "model"  # the MLflow pyfunc model of a run's kept weights (runs:/<id>/model)
HISTORY = "history.csv"
CONFIG = "config.yaml"
TRACEBACK = "traceback.txt"
REPORT_FOLDER = "netsweep.report_folder"  # on a parent: the folder its report was last drawn into (absolute)
REPORT_DIR = "report"  # on a parent: the sweep's comparison (figures and leaderboard)

# Metrics
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_ce")  # logged per epoch (step = epoch)

# Provenance (MLflow's own tag for the commit, so its UI links it)
GIT_COMMIT = "mlflow.source.git.commit"
GIT_DIRTY = "git_dirty"

# Stopping early
# a sweep run's best-so-far score per epoch, lower is better, that pruners read: its validation cross-entropy, or
# the per-epoch score of the sweep's objective (val_loss; val_acc negated); the name is kept for stores made before
CURVE = "netsweep.best_val_ce_curve"
PRUNED = "netsweep.pruned"  # why a sweep's pruner stopped the run
STOPPED_EARLY = "stopped_early"  # why a run's own patience stopped it
EVALUATED = "netsweep.evaluated"  # the run's model was evaluated by mlflow.models.evaluate

# Class names of the data sources whose labels stand for named classes, in label order (predictions and
# confusion matrices say these; sources not listed, digits and MNIST, are their digits)
CLASS_NAMES = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
DATA_NAME = "data.name"  # the param that names a run's data source
