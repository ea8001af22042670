"""The studio page in a real headless Chromium (Debian's chromium + chromium-driver, through Selenium),
against a live `charforge serve`: move a slider, wait for the new CG, check it is the asset the API returns."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import PIL.Image
import pytest

from service.svc_server import serve

pytestmark = pytest.mark.slow  # starts a server and a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _browser():
    if CHROMIUM is None or DRIVER is None:
        reason = "Chromium or chromedriver not installed (apt-get install chromium chromium-driver)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))


def _pixels_of_img(driver, element_id: str) -> np.ndarray:
    """The pixels the page shows in <img id=...>, read back through a canvas."""
    data = driver.execute_script(
        """const img = document.getElementById(arguments[0]);
           const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
           const g = c.getContext('2d'); g.drawImage(img, 0, 0);
           return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)];""",
        element_id,
    )
    width, height, flat = data
    return np.array(flat, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def test_slider_moves_the_cg_to_the_asset_the_api_returns(workspace, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        with serve(workspace, log_dir=tmp_path) as server:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 120, poll_frequency=0.2)
            link = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "a[data-name='mira']"))
            link.click()
            cg = driver.find_element(By.ID, "cg")
            base_sha = wait.until(lambda d: cg.get_attribute("data-sha256"))  # the base CG, rendered on first view

            slider = driver.find_element(By.ID, "emo-joy")
            slider.send_keys(Keys.ARROW_RIGHT * 16)  # 16 steps of 0.05: joy = 0.8
            assert slider.get_attribute("value") == "0.8"
            wait.until(lambda d: cg.get_attribute("data-state") == json.dumps({"joy": 0.8}, separators=(",", ":")))
            shown_sha = cg.get_attribute("data-sha256")
            shown_url = cg.get_attribute("data-url")
            assert shown_sha != base_sha

            # the API names the same asset for that state (now cached), and its bytes are what the page shows
            answer = server.post("/characters/mira/render", {"state": {"joy": 0.8}})
            assert answer.status_code == 200 and answer.json()["cached"]
            asset = answer.json()["asset"]
            assert (asset["sha256"], asset["url"]) == (shown_sha, shown_url)
            data = server.get(asset["url"]).content
            assert hashlib.sha256(data).hexdigest() == shown_sha
            expected = np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB"))
            assert np.array_equal(_pixels_of_img(driver, "cg"), expected)

            history = server.get("/characters/mira/history").json()
            assert history[-1]["emotions"] == {"joy": 0.8} and history[-1]["source"] == "api"
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sprites img")) == 2)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#history li"))

            # nothing the page loaded came from another origin
            resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert resources and all(r.startswith((server.url, "blob:")) for r in resources), resources

            shot = tmp_path / "studio.png"
            driver.save_screenshot(str(shot))
            assert PIL.Image.open(shot).size[0] > 0
            print(f"screenshot: {shot}")
    finally:
        driver.quit()
