"""End to end in headless Chromium (Debian's, driven by Playwright for Python): `nas dashboard` on a free
port against studies made by the test; the Studies page, a Pareto front with its pattern strips, an
ablation, an export, and a spec submitted on the Submit page that then runs and is listed.

Screenshots of every page go to test-artifacts/dashboard/; NAS_UPDATE_SCREENSHOTS=1 also copies them to
docs/screenshots/ (the ones the documentation shows).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
DOCS = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT / "benchmarks"))
try:  # one launcher for the tests and benchmarks/study_screenshot.py: the browser, its flags, the server's health
    from study_screenshot import ARGS, CHROMIUM, PLOTS, free_port, wait_healthy
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, dead but not yet reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp
            return True
    return False


def stop_group(pid: int, grace: float = 10) -> None:
    """SIGTERM to a process group we started (the process and what it started), then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        end = time.time() + wait
        while time.time() < end:
            if not group_alive(pid):
                return
            time.sleep(0.2)


def shoot(page, name: str) -> Path:
    """A screenshot of the whole page (Streamlit scrolls inside its main block: grow the window to fit)."""
    height = page.evaluate("document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(3200, max(720, int(height) + 120))})
    page.wait_for_timeout(600)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    try:  # a 256-colour palette: a third of the size, and the pages are flat colours anyway
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True
        )
    except Exception:
        pass
    if os.environ.get("NAS_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
    page.set_viewport_size({"width": 1280, "height": 900})
    return path


@pytest.fixture
def server(studies, tmp_path):
    """`nas dashboard` on a free port, on a copy of the studies plus a 400-trial search made for it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from dashboard_load import make_study
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    db = tmp_path / "studies.db"
    shutil.copy(studies["storage"].removeprefix("sqlite:///"), db)
    storage = f"sqlite:///{db}"
    make_study(storage, "hybrid-search", 400, running=2)
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, "NAS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "dashboard.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nas.cli",
                "dashboard",
                "--port",
                str(port),
                "--storage",
                storage,
                "--tracking",
                studies["tracking"],
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
        )
    try:
        wait_healthy(port, proc, log)
        yield {"url": f"http://127.0.0.1:{port}", "storage": storage, "home": home, "log": log}
    finally:
        for run in (home / "submitted").glob("*.run.json") if (home / "submitted").is_dir() else []:
            stop_group(json.loads(run.read_text())["pid"])
        stop_group(proc.pid)
        proc.wait(10)


@pytest.mark.timeout(240)
def test_the_dashboard_in_a_browser(server, studies):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright
    from studyutil import SPACE, micro_profile

    from nas import reader

    base = server["url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # assertions too (their own default is 5 s: a
            # Streamlit page's first render on a busy 2-core machine can take longer)

            page.goto(f"{base}/")
            expect(page.get_by_role("heading", name="Studies")).to_be_visible()
            for name in ("search", "failing", "live", "abl", "hybrid-search"):
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            shoot(page, "studies")

            page.goto(f"{base}/study?study=hybrid-search")
            page.wait_for_function(f"document.querySelectorAll('{PLOTS}').length >= 2")
            front = page.locator("[data-testid=stPlotlyChart]").nth(0)
            strips = page.locator("[data-testid=stPlotlyChart]").nth(1)
            expect(front.locator(".scatterlayer .trace").first).to_be_attached()
            expect(front.get_by_text("dominated (", exact=False)).to_be_visible()
            expect(strips.locator(".hm image, .heatmaplayer").first).to_be_attached()  # the cells
            for legend in ("attention", "Mamba-2", "mLSTM", "MoE"):
                expect(strips.get_by_text(legend, exact=False).first).to_be_visible()
            expect(page.get_by_text("are on the Pareto front of", exact=False)).to_be_visible()
            shoot(page, "study")

            page.goto(f"{base}/study?study=hybrid-search&tab=Learning+curves")
            page.wait_for_function(f"document.querySelectorAll('{PLOTS}').length >= 3")
            page.get_by_text("Learning curves").first.scroll_into_view_if_needed()
            shoot(page, "study-curves")

            views = {"Hypervolume": "Hypervolume of the Pareto front", "Parallel coordinates": "One line per trial",
                     "Slices": "against each search parameter"}
            for tab, caption in views.items():
                page.goto(f"{base}/study?study=hybrid-search&tab={tab.replace(' ', '+')}")
                page.wait_for_function(f"document.querySelectorAll('{PLOTS}').length >= 3")
                view = page.locator("[data-testid=stPlotlyChart]").nth(2)
                if tab == "Parallel coordinates":
                    expect(view.locator(".parcoords").first).to_be_attached()
                expect(page.get_by_text(caption, exact=False)).to_be_visible()
                shoot(page, f"study-{tab.split()[0].lower()}")

            page.goto(f"{base}/ablation?study=abl")
            page.wait_for_function(f"document.querySelectorAll('{PLOTS}').length >= 1")
            expect(page.get_by_text("vs base", exact=False).first).to_be_attached()
            shoot(page, "ablation")

            page.goto(f"{base}/export?study=search")
            expect(page.get_by_text("config.json").first).to_be_visible()
            expect(page.get_by_role("button", name="Download config.json")).to_be_visible()
            shoot(page, "export")

            spec = {
                "name": "from-browser",
                "space": SPACE,
                "budget": {"trials": 1},
                "profile": micro_profile(),
                "objectives": [{"metric": "synthetic_accuracy"}, {"metric": "decode_tps"}],
            }
            page.goto(f"{base}/submit")
            box = page.get_by_role("textbox", name="Spec")
            box.fill("name: broken\nspace: ratios\n")
            page.get_by_role("button", name="Validate").click()
            expect(page.get_by_text("error: unknown search space 'ratios'", exact=False)).to_be_visible()
            box.fill(yaml.safe_dump(spec))
            page.get_by_role("button", name="Validate").click()
            expect(page.get_by_text("Valid. from-browser", exact=False)).to_be_visible()
            page.get_by_role("button", name="Start").click()
            expect(page.get_by_text("Started from-browser", exact=False)).to_be_visible()
            shoot(page, "submit")

            page.goto(f"{base}/")
            expect(page.get_by_text("Started from this dashboard", exact=False)).to_be_visible()
            end = time.time() + 90  # the background `nas run` creates the study in the storage
            while "from-browser" not in reader.study_names(server["storage"]) and time.time() < end:
                time.sleep(0.5)
            assert "from-browser" in reader.study_names(server["storage"]), (
                server["home"] / "submitted" / "from-browser.log"
            ).read_text()[-3000:]
            expect(page.get_by_role("link", name="from-browser", exact=True)).to_be_visible(
                timeout=30_000
            )  # its next refresh
        finally:
            browser.close()
