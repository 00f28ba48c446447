"""Which objective ranks configs most reliably over seeds? Reads a seeds x grid sweep from a store.

    python bench/measure_objective.py sqlite:///path/mlflow.db [EXPERIMENT]

(after e.g. `python -m src.run -m +sweep=decay_lr seed=0,1,2,3,4`); what it printed is in the README's
"Why best_val_ce is the default objective"."""

import itertools
import sys

import numpy as np
from mlflow import MlflowClient
from scipy import stats

uri = sys.argv[1]
client = MlflowClient(uri)
exp = client.get_experiment_by_name(sys.argv[2] if len(sys.argv) > 2 else "netsweep")
runs = client.search_runs([exp.experiment_id], max_results=5000)
rows = {}
for r in runs:
    if r.data.tags.get("netsweep.role") == "sweep" or r.data.tags.get("outcome") != "finished":
        continue
    p = r.data.params
    key = (p["optimizer.lr"], p["model.decay"])
    rows.setdefault(key, {})[p["seed"]] = r.data.metrics
configs = sorted(rows)
seeds = sorted(set.intersection(*(set(v) for v in rows.values())))
print(len(configs), "configs", len(seeds), "seeds", seeds)
metrics = {"best_val_acc": -1, "best_val_ce": 1, "best_val_loss": 1, "test_acc": -1}


def table(m):
    return np.array([[rows[c][s][m] for s in seeds] for c in configs])  # (C, S)


test = table("test_acc")
for m, sign in metrics.items():
    v = table(m) * sign  # lower is better
    taus = [stats.kendalltau(v[:, a], v[:, b]).statistic for a, b in itertools.combinations(range(len(seeds)), 2)]
    ties = np.mean([len(np.unique(v[:, s])) for s in range(len(seeds))])
    # leave one seed out: rank by the metric's mean over the others, score on the held-out seed's test_acc
    regret, tau_test = [], []
    for h in range(len(seeds)):
        others = [s for s in range(len(seeds)) if s != h]
        mean = v[:, others].mean(axis=1)
        pick = int(np.argmin(mean))
        regret.append(test[:, h].max() - test[pick, h])
        tau_test.append(stats.kendalltau(-mean, test[:, h]).statistic)
    # single seed picks: winner on seed s, its test_acc mean over other seeds vs the best config's
    single = []
    for s in range(len(seeds)):
        pick = int(np.argmin(v[:, s]))
        others = [o for o in range(len(seeds)) if o != s]
        single.append(test[:, others].mean(axis=1).max() - test[pick, others].mean())
    # paired between-seed correlation: how much of a seed's luck is shared by all configs
    print(
        f"{m:14s} seed-to-seed Kendall tau {np.mean(taus):.3f} (min {np.min(taus):.3f})"
        f"  distinct values/seed {ties:.1f}/{len(configs)}"
        f"  LOO: tau vs held-out test_acc {np.mean(tau_test):.3f}, regret {np.mean(regret) * 100:.2f} pts;"
        f"  one-seed pick regret {np.mean(single) * 100:.2f} pts"
    )
v = table("best_val_ce")
r = np.corrcoef(v.T)
shared = r[np.triu_indices(len(seeds), 1)].mean().round(3)
print("best_val_ce: mean correlation of seeds across configs", shared)
# pairing: variance of config differences paired vs unpaired
for m in ("best_val_ce", "best_val_acc"):
    v = table(m)
    d = v[:, None, :] - v[None, :, :]
    iu = np.triu_indices(len(configs), 1)
    paired = d.std(axis=2, ddof=1)[iu].mean()
    unpaired = np.sqrt(v.var(axis=1, ddof=1)[:, None] + v.var(axis=1, ddof=1)[None, :])[iu].mean()
    print(f"{m}: sd of a config difference, paired over seeds {paired:.4f}, unpaired {unpaired:.4f}")
print("single-seed ranking by the metric vs the configs' test_acc averaged over the OTHER seeds (Kendall tau-b):")
for m, sign in metrics.items():
    v = table(m) * sign
    taus = []
    for s in range(len(seeds)):
        others = [o for o in range(len(seeds)) if o != s]
        taus.append(stats.kendalltau(-v[:, s], test[:, others].mean(axis=1)).statistic)
    print(f"  {m:14s} {np.mean(taus):.3f} (per seed: {' '.join(f'{t:.2f}' for t in taus)})")
print("per config means (lr, decay): ce, acc, test_acc")
for c, ce, acc, t in sorted(
    zip(configs, table("best_val_ce").mean(1), table("best_val_acc").mean(1), test.mean(1), strict=False),
    key=lambda r: r[1],
):
    print(" ", c, f"{ce:.4f} {acc:.4f} {t:.4f}")
