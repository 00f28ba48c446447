"""Where a person looks at what was recorded: the `mlflow ui` command for a local store and the link that
opens an experiment's runs table directly (MLflow 3 opens experiments on a GenAI overview otherwise)."""

from src.tracking.opening import is_local_file

RUNS_TABLE = "#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_base(uri: str, port: int) -> str:
    """The address of the UI: the tracking server itself, or the `mlflow ui` a local store needs."""
    return f"http://127.0.0.1:{port}" if is_local_file(uri) else uri.rstrip("/")


def ui_command(uri: str, port: int) -> str:
    """What to run to browse `uri` (nothing to run for a tracking server: it serves its own UI)."""
    return f"mlflow ui --backend-store-uri {uri} --port {port}" if is_local_file(uri) else ""


def runs_table_url(uri: str, experiment_id: str, port: int) -> str:
    return f"{ui_base(uri, port)}/{RUNS_TABLE.format(experiment_id=experiment_id)}"


def browse_lines(uri: str, experiment_id: str, port: int) -> list[str]:
    """One line with the command (local stores), one with the link."""
    command = ui_command(uri, port)
    link = runs_table_url(uri, experiment_id, port)
    return ([f"browse: {command}"] if command else []) + [f"runs table: {link}"]
