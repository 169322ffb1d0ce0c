"""A study's page in the dashboard as a picture: `nas dashboard` on a store, Debian's headless Chromium.

    python benchmarks/study_screenshot.py --home gpu-demo/nas --study demo-gpu --out docs/screenshots/gpu-study.png
    python benchmarks/study_screenshot.py --smoke     # a generated 40-trial study, a picture in a temporary folder

For a study that ran elsewhere (a GPU machine) and came back as its embedded store (`NAS_HOME`: studies.db
and mlflow.db): the dashboard runs here on a copy of that folder, and the Study page is captured once its
figures are drawn. `--tab` picks a tab ("Hypervolume", "Learning curves", ...; default the page as it opens).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from _report import free_port  # beside this script

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PLOTS = "[data-testid=stPlotlyChart] .main-svg"


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"`nas dashboard` exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the dashboard did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


def shoot(home: Path, study: str, out: Path, tab: str | None, plots: int) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / "home"
        shutil.copytree(home, work)  # the dashboard never writes into the store that came back
        port, log = free_port(), Path(d) / "dashboard.log"
        env = {**os.environ, "NAS_HOME": str(work), "PYTHONUNBUFFERED": "1"}
        env.pop("NAS_STORAGE", None)
        env.pop("NAS_TRACKING", None)
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", "--port", str(port)],
                                    stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            wait_healthy(port, proc, log)
            query = {"study": study, **({"tab": tab} if tab else {})}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/study?{urllib.parse.urlencode(query)}")
                page.wait_for_function(f"document.querySelectorAll('{PLOTS}').length >= {plots}", timeout=90_000)
                height = page.evaluate("document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
                page.set_viewport_size({"width": 1280, "height": min(3200, max(720, int(height) + 120))})
                page.wait_for_timeout(800)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    try:  # a 256-colour palette: a third of the size; the pages are flat colours
        from PIL import Image

        Image.open(out).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    except ImportError:
        pass
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="the study's embedded store: a folder with studies.db and mlflow.db")
    ap.add_argument("--study", help="the study's name")
    ap.add_argument("--tab", default=None, help="a tab of the Study page (default: the page as it opens)")
    ap.add_argument("--plots", type=int, default=2, help="wait until this many figures are drawn")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="a generated study; the picture goes to a temporary folder")
    args = ap.parse_args()
    if args.smoke:
        from dashboard_load import make_study  # beside this script (the script's folder is on the path)

        with tempfile.TemporaryDirectory() as d:
            home = Path(d) / "nas"
            home.mkdir()
            make_study(f"sqlite:///{home / 'studies.db'}", "smoke", 40)
            shoot(home, "smoke", Path(d) / "smoke.png", None, args.plots)
        return
    if args.home is None or args.study is None or args.out is None:
        raise SystemExit("study_screenshot.py needs --home (the store's folder), --study and --out; or --smoke")
    if not (args.home / "studies.db").exists():
        raise SystemExit(f"{args.home} has no studies.db: pass the NAS_HOME folder a study ran with")
    shoot(args.home, args.study, args.out, args.tab, args.plots)


if __name__ == "__main__":
    main()
