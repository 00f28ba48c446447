"""netsweep's own `--help`: what it does, the config groups and their options, the top-level keys, and
examples; read from conf/ and sweeps/ so it never goes stale (Hydra's help stays at --hydra-help)."""

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

EXAMPLES = """\
examples:
  python -m src.run                                          one run of the assignment's net on digits
  python -m src.run data=fashion_mnist epochs=10 optimizer.lr=0.05
  python -m src.run -m optimizer.lr=0.03,0.1,0.3 model.decay=0,1e-4   a sweep: 6 configs in parallel
  python -m src.run -m +sweep=decay_lr seed=0,1,2           a named sweep (sweeps/decay_lr.yaml), 3 seeds
  python -m src.run -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 'optimizer.lr=interval(0.01,0.5)'
  python -m src.report <sweep_id> --out report/             rebuild a sweep's comparison from MLflow
  python -m src.run --cfg job                                print the composed config
  mlflow ui --port 5000                                      browse every run (runs table: 'Model training')
"""


def _first_comment(path: Path) -> str:
    """The file's description: its first comment line (comments are not YAML data, so no parser returns them)."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("# ").strip()
    return ""


def _keys(path: Path) -> list[tuple[str, str, str]]:
    """(key, value as written, comment) of the top-level keys of a YAML file whose value is on their line with
    a comment after it. PyYAML's node tree gives each value's text and where it ends; the comment is the
    rest of that line."""
    text = path.read_text()
    lines, root = text.splitlines(), yaml.compose(text)
    found = []
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        if not isinstance(value, yaml.ScalarNode) or value.end_mark.line != key.start_mark.line:
            continue
        rest = lines[value.end_mark.line][value.end_mark.column :].strip()
        if rest.startswith("#"):
            found.append((str(key.value), str(value.value), rest.lstrip("#").strip()))
    return found


def _defaults(config: Path) -> dict[str, str]:
    """{group: default option} of a config's defaults list (`- data: digits`), read by OmegaConf."""
    loaded = OmegaConf.load(config)
    entries = loaded.get("defaults", []) if isinstance(loaded, DictConfig) else []
    return {
        str(group): str(option)
        for entry in entries
        if isinstance(entry, DictConfig)
        for group, option in entry.items()
        if " " not in str(group)  # `override hydra/launcher: ...` sets Hydra's groups, not netsweep's
    }


def help_text(conf_dir: Path) -> str:
    defaults = _defaults(conf_dir / "config.yaml")
    lines = [
        "netsweep: train, sweep, compare and reproduce a one-hidden-layer NumPy net (ReLU, softmax,",
        "SGD on cross-entropy plus weight decay), every run recorded in MLflow.",
        "",
        "usage: python -m src.run [-m] [group=option ...] [key=value ...]",
        "",
        "config groups (group=option):",
    ]
    for group in sorted(p for p in conf_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        options = sorted(p.stem for p in group.glob("*.yaml"))
        marked = [f"{o} (default)" if o == defaults.get(group.name) else o for o in options]
        lines.append(f"  {group.name:<10} {', '.join(marked)}")
        for option in options:
            lines.append(f"  {'':<10}   {option}: {_first_comment(group / f'{option}.yaml')}")
    lines += ["", "top-level keys (key=value):"]
    lines += [f"  {key + '=' + value:<26} {comment}" for key, value, comment in _keys(conf_dir / "config.yaml")]
    sweeps = sorted((conf_dir / "sweep").glob("*.yaml")) if (conf_dir / "sweep").is_dir() else []
    if sweeps:
        lines += ["", "named sweeps (-m +sweep=name):"]
        lines += [f"  {path.stem:<10} {_first_comment(path)}" for path in sweeps]
    lines += ["", "every key of a group: python -m src.run --cfg job; sweep settings: hydra.launcher.* (README)", ""]
    return "\n".join(lines) + "\n" + EXAMPLES
