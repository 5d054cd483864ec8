"""Debian's Chromium, headless, driven by Selenium through Debian's chromium-driver (README Set up).

The driver's path is given, so Selenium Manager never looks for (or downloads) a driver or browser.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = "install chromium and chromium-driver (README Set up)"


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(DRIVER)


def chromium(width: int = 1400, height: int = 1000):
    """A headless browser that keeps the page's console messages (``get_log("browser")``)."""
    if not available():
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium's usage statistics: nothing leaves the machine
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def page_errors(driver) -> list[str]:
    """Console messages of level SEVERE (errors, failed loads, CSP violations) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
