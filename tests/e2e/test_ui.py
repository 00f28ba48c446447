"""The MLflow UI in a real browser (Debian's headless Chromium, driven by Playwright): the link a sweep prints
opens the runs table in the sweep's saved view, its parent named by what it swept and showing the winner's
objective and accuracy as columns, every config under it once expanded; the report's index.html opens in the
parent's artifact viewer, figures included. Screenshots are kept in test-artifacts/ui/."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from ..helpers import REPO, cli_env, read_store

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra installs it
    sync_playwright = None

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = REPO / "test-artifacts" / "ui"
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


def _needs(ok: bool, what: str) -> None:
    if not ok:  # CI installs both (.ci/run): there, a missing one is a failure, not a skip
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{what} is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_ui(cli):
    """A sweep of four configs in a fresh store, and `mlflow ui` on it; yields the link the sweep printed."""
    port = _free_port()
    result = cli(
        "-m",
        "optimizer.lr=0.05,0.3",
        "model.decay=0,1e-4",
        "epochs=2",
        f"tracking.ui_port={port}",
        "hydra.launcher.progress_interval_s=0",
    )
    assert result.returncode == 0, result.stderr
    link = re.search(r"runs table: (\S+)", result.stdout).group(1)
    assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/") and "workflowType=machine_learning" in link
    assert re.search(r"&viewStateShareKey=netsweep-[0-9a-f]{12}$", link)
    assert f"mlflow ui --backend-store-uri {cli.uri} --port {port}" in result.stdout
    server = subprocess.Popen(
        ["mlflow", "ui", "--backend-store-uri", cli.uri, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cli.cwd,
        env=cli_env(cli.uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180  # a loaded machine starts mlflow ui in 30-90 s
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield link
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_printed_link_opens_the_sweeps_results_and_its_report(mlflow_ui, cli):
    _needs(CHROMIUM is not None, "chromium (apt-get install chromium)")
    _needs(sync_playwright is not None, "playwright (pip install -e '.[test]')")
    view = read_store(cli.uri)
    (parent,) = view.parents
    children = view.under(parent)
    assert len(children) == 4 and parent.info.run_name.startswith("digits, 2 epochs, lr x decay, 4 configs")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(mlflow_ui)
        parent_cell = page.locator("[role=gridcell][col-id]", has_text=parent.info.run_name[:30]).first
        parent_cell.wait_for(timeout=60000)
        headers = [h.get_attribute("col-id") for h in page.locator("[role=columnheader][col-id]").all()]
        shown = ["metrics.`best_val_ce`", "metrics.`best_val_acc`", "params.`optimizer.lr`", "params.`model.decay`"]
        assert all(column in headers for column in shown), headers
        objective = page.locator("[role=gridcell][col-id='metrics.`best_val_ce`']").first
        assert objective.inner_text().startswith(f"{parent.data.metrics['best_val_ce']:.4f}"[:5])  # the winner's
        page.screenshot(path=SCREENSHOTS / "runs-table.png")
        parent_cell.locator("button").first.click()  # expand the sweep: its configs appear under it
        for child in children:
            page.get_by_text(child.info.run_name, exact=True).first.wait_for(timeout=30000)
        page.screenshot(path=SCREENSHOTS / "runs-table-expanded.png")
        experiment = parent.info.experiment_id
        page.goto(
            mlflow_ui.split("#")[0] + f"#/experiments/{experiment}/runs/{parent.info.run_id}"
            "/artifacts/report/index.html"
        )
        report = page.frame_locator("iframe").first  # the viewer shows an HTML artifact in a sandboxed frame
        report.locator("h2", has_text="Leaderboard").wait_for(timeout=60000)
        figure = report.locator("img[src^='data:image/png;base64,']").first
        assert figure.evaluate("image => image.decode().then(() => image.naturalWidth)") > 300  # figures inline
        assert "python -m src.run" in report.locator("pre").first.inner_text()  # how to reproduce the winner
        page.screenshot(path=SCREENSHOTS / "report-index.png")
        browser.close()
