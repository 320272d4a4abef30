"""/docs in a real browser with the network cut off: Swagger UI loads from the installed files,
"Try it out" on POST /refine with a PNG and `image/png` shows the refined picture, and its Authorize
button sends an API key (401 before, 200 after).

Headless Chromium from the system's packages (Debian: chromium, chromium-driver; `.ci/run` installs
them through `make test`) driven by selenium. Only where neither can be found does this skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from models import ModelCard
from service.main import create_app
from tests.factories import image_file, live_server, random_images

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

ANSWERED_RESOURCES = (
    "return performance.getEntriesByType('resource').filter(e => e.responseStatus > 0).map(e => e.name)"
)
"""URLs of everything the page loaded that answered (the network being cut off, only the server can)."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver; "
    "`make test` installs them where apt-get works)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root in CI
        "--disable-dev-shm-usage",
        "--window-size=1400,2400",
        # The network cut off: every name but the test server's address fails to resolve, and any
        # connection that still tries goes to a proxy that does not exist.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def test_swagger_ui_refines_a_png_on_the_first_try_without_network(
    browser: Any, make_settings: Callable[..., Settings], gray_model: ModelCard, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    picture = tmp_path / "eye.png"
    picture.write_bytes(image_file(random_images(1, 35, 55, seed=3)[0]))
    wait = WebDriverWait(browser, 20)

    with live_server(create_app(make_settings())) as client:
        origin = str(client.base_url).rstrip("/")
        browser.get(f"{origin}/docs")
        operation = wait.until(ec.element_to_be_clickable((By.ID, "operations-refine-refine_refine_post")))
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        body_type = wait.until(
            ec.presence_of_element_located(
                (By.CSS_SELECTOR, "#operations-refine-refine_refine_post .body-param-content-type select")
            )
        )
        Select(body_type).select_by_value("multipart/form-data")
        block = browser.find_element(By.ID, "operations-refine-refine_refine_post")
        files = wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        files[0].send_keys(str(picture))
        Select(block.find_element(By.CSS_SELECTOR, ".response-control-media-type select")).select_by_value(
            "image/png"
        )
        block.find_element(By.CSS_SELECTOR, "button.execute").click()

        status = wait.until(
            lambda _: block.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
        )
        image = WebDriverWait(block, 20).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, ".live-responses-table .response-col_description img")
        )
        width = wait.until(lambda _: image[0].get_property("naturalWidth"))
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")

    assert status[0].text.strip().startswith("200")
    assert width == 55 and image[0].get_property("naturalHeight") == 35
    assert loaded and all(url.startswith(origin) or url.startswith("blob:") for url in loaded), loaded


def test_redoc_loads_from_the_installed_files_without_network(
    browser: Any, make_settings: Callable[..., Settings]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with live_server(create_app(make_settings())) as client:
        origin = str(client.base_url).rstrip("/")
        browser.get(f"{origin}/redoc")
        title = WebDriverWait(browser, 20).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, ".api-info h1"))
        )
        text = title.text
        operations = browser.page_source.count("Refine images now")
        # Only what answered: ReDoc's footer logo points at a CDN, which the page's Content-Security-Policy
        # blocks (and the image hides itself).
        loaded = browser.execute_script(ANSWERED_RESOURCES)

    assert text.startswith("simgan")
    assert operations >= 1
    assert loaded and all(url.startswith(origin) for url in loaded), loaded


def test_swagger_ui_authorize_button_sends_the_api_key(
    browser: Any, make_settings: Callable[..., Settings], gray_model: ModelCard
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    key = "refine-key-for-the-browser-0123"
    wait = WebDriverWait(browser, 20)
    operation = (By.ID, "operations-models-list_models_models_get")

    def list_models_status(answers: int) -> str:
        """Execute GET /models in Swagger UI (try-it-out is on by default) and read the status shown."""
        block = wait.until(ec.presence_of_element_located(operation))
        if not block.find_elements(By.CSS_SELECTOR, ".opblock-body"):
            block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, "button.execute"))[0].click()
        cells = wait.until(
            lambda _: (
                [
                    cell
                    for cell in block.find_elements(
                        By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
                    )
                    if cell.text.strip()
                ][answers - 1 :]
                or None
            )
        )
        return str(cells[0].text.strip())

    with live_server(create_app(make_settings(api_keys=f"refine:{key}"))) as client:
        browser.get(f"{str(client.base_url).rstrip('/')}/docs")
        without = list_models_status(1)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".auth-wrapper .authorize"))).click()
        field = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux-content input")))
        field.send_keys(key)
        browser.find_element(By.CSS_SELECTOR, ".modal-ux-content .auth-btn-wrapper .authorize").click()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".modal-ux-content .btn-done"))).click()
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
        with_key = list_models_status(1)

    assert without.startswith("401")
    assert with_key.startswith("200")
