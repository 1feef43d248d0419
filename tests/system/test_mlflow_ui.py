"""The real MLflow UI, served by `mlflow server` and read by headless Chromium, shows
abe's runs with their lr/gamma params and eval/return_mean."""

import shutil
import signal

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import TINY, MlflowServer, run_cli

CHROMIUM_FLAGS = [  # the background-networking flags keep Chromium off the closed network
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A store filled by a real training run, served by a real `mlflow server`."""
    root = tmp_path_factory.mktemp("ui")
    store = root / "store"
    overrides = [o for o in TINY if not o.startswith("logger")]
    proc = run_cli(
        "env=pendulum",
        "lr=3e-4",
        "gamma=0.97",
        *overrides,
        f"logger.store_dir={store}",
        "logger.run_name=ui-test-run",
        f"hydra.run.dir={root / 'run'}",
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    server = MlflowServer(store).start()
    try:
        yield server.url, store
    finally:
        server.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian chromium and chromium-driver are needed (tests/setup.sh installs them)"
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    yield browser
    browser.quit()


def page_text_containing(browser, url: str, *needles: str) -> str:
    browser.get(url)
    WebDriverWait(browser, 60).until(lambda b: all(n in b.find_element(By.TAG_NAME, "body").text for n in needles))
    return browser.find_element(By.TAG_NAME, "body").text


def test_ui_lists_the_run_and_shows_its_params_and_return(server, browser):
    url, store = server
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Pendulum-v1")
    [run] = client.search_runs([experiment.experiment_id])
    # The runs table (not the GenAI overview MLflow 3 opens by default).
    page_text_containing(browser, f"{url}/#/experiments/{experiment.experiment_id}/runs", "ui-test-run")
    # The run's page: params and the final eval return.
    text = page_text_containing(
        browser,
        f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}",
        "eval/return_mean",
        "gamma",
    )
    lines = text.splitlines()
    value_of = {name: lines[i + 1] for i, name in enumerate(lines[:-1])}
    assert value_of["lr"] == "0.0003" and value_of["gamma"] == "0.97"
    assert float(value_of["eval/return_mean"]) == pytest.approx(run.data.metrics["eval/return_mean"])
