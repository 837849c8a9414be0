"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium).

It loads the page served by a real uvicorn, saves the key, runs a text search and an
image search on an indexed demo video, sees thumbnails load, and opens a result
(similar scenes, contact sheet). The screenshot it takes is the README's
(``VIDX_SCREENSHOT=docs/web-page.png`` writes it there).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures.api import ApiWorld, LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 60

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver are not installed (scripts/install.sh installs them)"
)


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def loaded_thumbnails(driver, selector: str) -> int:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length",
        selector,
    )


def test_search_by_text_and_image_then_open_a_result(api_world: ApiWorld, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    frame = next(api_world.settings.sidecar_dir.rglob("*.jpg"))  # a best frame of the demo video
    with LiveServer(api_world.settings) as server:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "key").send_keys(api_world.a.key)
        browser.find_element(By.ID, "key-save").click()
        wait.until(lambda d: "done" in d.find_element(By.ID, "videos").text)
        assert browser.execute_script("return localStorage.getItem('vidx.apiKey')") == api_world.a.key

        # Text search (the tiny test model's similarities are arbitrary: no threshold).
        browser.find_element(By.CSS_SELECTOR, "details summary").click()
        browser.find_element(By.ID, "threshold").send_keys("-1")
        browser.find_element(By.ID, "q").send_keys("a colourful test pattern")
        browser.find_element(By.CSS_SELECTOR, "#text-form button").click()
        wait.until(lambda d: loaded_thumbnails(d, "#results .result img") == len(api_world.a.scene_ids))
        assert api_world.video.name in browser.find_element(By.ID, "results").text
        assert "scene(s) for" in browser.find_element(By.ID, "status").text

        # Image search: the file input of the drop zone.
        browser.find_element(By.ID, "image").send_keys(str(frame))
        wait.until(lambda d: "image" in d.find_element(By.ID, "status").text)
        wait.until(lambda d: loaded_thumbnails(d, "#results .result img") >= 1)
        top = browser.find_element(By.CSS_SELECTOR, "#results .result")
        assert top.get_attribute("data-scene-id") in {str(s) for s in api_world.a.scene_ids}

        # Open a result: its frame, similar scenes, and the contact sheet (or why there is none).
        top.click()
        wait.until(lambda d: d.find_element(By.ID, "detail").is_displayed())
        wait.until(lambda d: loaded_thumbnails(d, "#similar .result img") == len(api_world.a.scene_ids) - 1)
        wait.until(lambda d: loaded_thumbnails(d, "#detail-frame") == 1)
        sheet_settled = ("", "Loading…")
        wait.until(lambda d: loaded_thumbnails(d, "#sheet") == 1 or d.find_element(By.ID, "sheet-note").text not in sheet_settled)
        browser.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "web-page.png"
        browser.set_window_size(1280, 1400)
        assert browser.save_screenshot(str(shot))
        if os.environ.get("VIDX_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["VIDX_SCREENSHOT"])

        # Phone width: nothing wider than the screen.
        browser.set_window_size(390, 844)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")

    browser.get("about:blank")
    assert not list((api_world.settings.data_dir / "tmp").iterdir())  # the query image was removed


def test_a_bad_key_shows_a_clear_message(api_world: ApiWorld, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with LiveServer(api_world.settings) as server:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "key").send_keys("vidx_wrong")
        browser.find_element(By.ID, "key-save").click()
        browser.find_element(By.ID, "q").send_keys("anything")
        browser.find_element(By.CSS_SELECTOR, "#text-form button").click()
        WebDriverWait(browser, WAIT_S).until(lambda d: "unauthorized" in d.find_element(By.ID, "status").text)
