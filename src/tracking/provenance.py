"""Where a run's code came from: the git commit of the checkout that trains, and whether it had edits."""

import subprocess
from pathlib import Path

from src.tracking import names

CODE_DIR = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=CODE_DIR, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_tags() -> dict:
    """The commit of the code that trains (when it sits in a git checkout) and whether it had local edits."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {}
    return {names.GIT_COMMIT: commit, names.GIT_DIRTY: bool(_git("status", "--porcelain", "--untracked-files=no"))}
