"""The sweep's report as one self-contained HTML page (report/index.html): figures inline as base64 PNG,
no scripts, no stylesheet or font from elsewhere, so it opens from disk, from a mail, or in MLflow's
artifact viewer alike."""

from __future__ import annotations

import base64
import datetime
import html
import json
from dataclasses import dataclass

from src.report import leaderboard
from src.report.figures import sweep_label
from src.report.load import SweepData

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.meta { color: #555; } .box { background: #f4f6f8; border-left: 4px solid #3b7dd8; padding: 0.6em 1em; }
pre { background: #272822; color: #f8f8f2; padding: 0.6em 0.8em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 13px; } th, td { border: 1px solid #ccd; padding: 2px 6px; }
th { background: #e8ecf2; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.winner td { background: #ffe5e5; } tr.tied td { background: #fff2dc; } tr.failed td { color: #999; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; } details { margin: 0.6em 0; }
"""

CAPTIONS = {
    "curves.png": "Validation cross-entropy and accuracy per epoch; the top three bold and labelled by rank.",
    "heatmap.png": "The objective over the grid; the winner framed red, the configs tied with it orange.",
    "scatter.png": "The objective over the sampled values (log axes where they span decades).",
    "parallel.png": "Every config as a line through its values and its objective.",
    "importance.png": "How much each key alone explains of the ranking, with a 90 % bootstrap interval.",
}


@dataclass
class Page:
    """What the page says besides the data: the findings and the winner's command, as the console says them."""

    findings: list[str]
    reproduce: str  # the command line, '' when no config has a result
    figures: dict[str, bytes]  # file name -> PNG


def _e(text: object) -> str:
    return html.escape(str(text))


def _image(name: str, png: bytes) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    caption = CAPTIONS.get(name, "")
    return (
        f'<figure id="{_e(name)}"><img alt="{_e(name)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{_e(name)}: {_e(caption)}</figcaption></figure>"
    )


def _row_class(row: dict) -> str:
    if row["rank"] == 1 and row["with_winner"]:
        return "winner"
    if row["with_winner"]:
        return "tied"
    return "failed" if row["outcome"] in ("diverged", "error", "killed") else ""


def table(data: SweepData, rows: list[dict]) -> str:
    """The leaderboard as an HTML table, the columns of the Markdown one."""
    names = leaderboard.columns(rows, data.swept_keys, data.objective.metric)
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(leaderboard.cell(row, n, data.swept_keys))}</td>'
            if isinstance(row[n], (int, float)) and n != "rank"
            else f"<td>{_e(leaderboard.cell(row, n, data.swept_keys))}</td>"
            for n in names
        )
        body.append(f'<tr class="{_row_class(row)}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _settings(data: SweepData) -> str:
    tags = data.parent_tags
    command = tags.get("sweep_overrides", "")
    launcher = {k: v for k, v in sorted(tags.items()) if k.startswith("launcher.")}
    shared = leaderboard.common_settings(data)
    items = [
        f"<li>command: <code>python -m src.run -m {_e(command)}</code></li>" if command else "",
        f"<li>every config: <code>{_e(shared)}</code> (beyond the defaults)</li>" if shared else "",
        f"<li>objective: <code>{_e(data.objective.describe())}</code>; accuracy is shown beside it</li>",
        f"<li>swept: {_e(', '.join(data.swept_keys) or '(nothing)')}; seeds per config: {data.seeds}</li>",
        f"<li>launcher: <code>{_e(' '.join(f'{k}={v}' for k, v in launcher.items()))}</code></li>" if launcher else "",
        f"<li>parent run: <code>{_e(data.parent_run_id)}</code> (experiment {_e(data.experiment_id)})</li>",
    ]
    defaults = json.dumps(data.defaults or {}, indent=1, sort_keys=True)
    return (
        "<ul>"
        + "".join(i for i in items if i)
        + "</ul><details><summary>the defaults the sweep recorded</summary>"
        + f"<pre>{_e(defaults)}</pre></details>"
    )


def render(data: SweepData, rows: list[dict], page: Page) -> str:
    """The whole page."""
    started = (
        datetime.datetime.fromtimestamp(data.started_ms / 1000).strftime("%Y-%m-%d %H:%M") if data.started_ms else ""
    )
    heading = sweep_label(data)
    findings = "".join(f"<li>{_e(line)}</li>" for line in page.findings)
    reproduce = f"<p>Reproduce the winner:</p><pre>{_e(page.reproduce)}</pre>" if page.reproduce else ""
    figures = "".join(_image(name, png) for name, png in page.figures.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(heading)} (sweep {_e(data.sweep_id)})</title>
<style>{STYLE}</style></head><body>
<h1>Sweep {_e(data.sweep_id)}: {_e(heading)}</h1>
<p class="meta">ranked by {_e(data.objective.describe())}{", started " + _e(started) if started else ""};
rebuild with <code>python -m src.report {_e(data.sweep_id)}</code></p>
<div class="box"><ul>{findings}</ul>{reproduce}</div>
<h2>Leaderboard</h2>
{table(data, rows)}
<h2>Figures</h2>
{figures}
<h2>Settings</h2>
{_settings(data)}
</body></html>
"""
