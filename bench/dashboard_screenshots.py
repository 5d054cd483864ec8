"""Screenshots of every dashboard page, served by a real Gunicorn from a quick bundle with a replayed
prediction log (tests/support/replay.py), into bench/screenshots/ (not in the repository).

    .venv/bin/python -m bench.dashboard_screenshots [--hours 120] [--out bench/screenshots]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from crypto_predictor.registry.aliases import set_alias
from crypto_predictor.training.pipeline import TrainOptions, train_run
from tests.support.browser import chromium, page_errors
from tests.support.gunicorn import GunicornServer
from tests.support.replay import hold_back, replay
from tests.support.slices import fill_store

TOKEN = "screenshots-only"
PAGES = {"overview": "/dashboard/", "pair-bitcoin-1h": "/dashboard/pair/bitcoin/1h",
         "pair-ethereum-24h": "/dashboard/pair/ethereum/24h", "compare": "/dashboard/compare"}


@click.command()
@click.option("--data-dir", default="../shared/data/ohlcv", show_default=True)
@click.option("--hours", default=120, show_default=True, help="Hours of predictions to replay")
@click.option("--out", default="bench/screenshots", show_default=True)
def main(data_dir, hours, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dashboard-"))
    url = f"sqlite:///{root / 'store.db'}"
    fill_store(url, data_dir, ("bitcoin", "ethereum"), last_days=120)
    held = hold_back(url, hours)
    models = root / "models"
    versions = [train_run(url, ["bitcoin", "ethereum"], ["1h", "24h"], TrainOptions(kinds=kinds, quick=True, seed=s),
                          models, n_jobs=2)[0]
                for kinds, s in ((("linear", "random_forest", "xgboost", "ensemble"), 1), (("linear",), 2))]
    set_alias(models, "production", versions[0])
    set_alias(models, "challenger", versions[1])
    started = time.perf_counter()
    made = replay(url, models, held)
    print(f"replayed {made} predictions in {time.perf_counter() - started:.1f} s")
    subprocess.run([sys.executable, "-m", "crypto_predictor", "verify"], env=dict(os.environ, DATABASE_URL=url),
                   check=True, capture_output=True)  # a recorded job run, as cron leaves one
    server = GunicornServer(root, dict(DATABASE_URL=url, MODELS_DIR=str(models), MARKET_DATA_SOURCE="csv",
                                       DASHBOARD_TOKEN=TOKEN, AB_CHALLENGER_SHARE="0.2", WEB_CONCURRENCY="2"))
    server.start()
    driver = chromium(1400, 2600)
    try:
        driver.get(server.base + "/dashboard/login")
        driver.find_element("id", "token").send_keys(TOKEN)
        driver.find_element("id", "sign-in").click()
        for name, path in PAGES.items():
            driver.get(server.base + path)
            marks = len(driver.find_elements("css selector", "svg .mark"))
            driver.save_screenshot(str(out / f"{name}.png"))
            print(f"{name:<18} {marks:>4} chart marks, console errors: {page_errors(driver) or 'none'}")
    finally:
        driver.quit()
        server.stop()
    print(f"screenshots in {out}/")


if __name__ == "__main__":
    main()
