"""`specstore export` and `specstore report`; the report is loaded in headless Chromium (selenium)."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import main
from training.listening import Run, pick_sample

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def runs(enhance_models, evaluate_real):
    store, versions = enhance_models
    return store, evaluate_real(store, versions["crn"]), evaluate_real(store, versions["dccrn"])


def test_export_writes_every_role_and_the_metrics(runs, tmp_path):
    store, run_id, _ = runs
    assert main(["export", "--store", store.root, "--run", run_id, "--out", tmp_path / "x"]) == 0
    run = Run.load(store, run_id)
    for role in ("input", "clean", "enhanced"):
        files = sorted((tmp_path / "x" / role).glob("*.wav"))
        assert len(files) == 11
        uid = files[0].stem
        samples, rate = sf.read(files[0], dtype="float32")
        assert rate == store.sample_rate
        np.testing.assert_array_equal(samples, run.samples(store, uid, role))
    with open(tmp_path / "x" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 22 and {r["model"] for r in rows} == {"noisy", "crn"}
    # a second export into the same folder is refused without --overwrite; --roles chooses
    assert main(["export", "--store", store.root, "--run", run_id, "--out", tmp_path / "x"]) == 2
    args = ["export", "--store", store.root, "--run", run_id, "--out", tmp_path / "y", "--roles", "enhanced"]
    assert main(args) == 0 and not (tmp_path / "y" / "input").exists()
    assert main(["export", "--store", store.root, "--run", "run-nope", "--out", tmp_path / "z"]) == 2


def _browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}: Debian's chromium, chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (the dev extras)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,2000",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


def test_report_in_headless_chromium(runs, tmp_path):
    store, run_id, other = runs
    out = tmp_path / "report"
    args = ["report", "--store", store.root, "--run", run_id, "--compare", other, "--out", out]
    assert main(args) == 0
    assert (out / "index.html").stat().st_size < 200_000  # audio and images are files beside the page
    browser = _browser()
    try:
        browser.get((out / "index.html").as_uri())
        durations = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const players = Array.from(document.querySelectorAll('audio'));
            const ready = p => new Promise(ok => {
              if (p.readyState >= 1) return ok(p.duration);
              p.addEventListener('loadedmetadata', () => ok(p.duration));
              p.addEventListener('error', () => ok(-1));
              p.load();
            });
            Promise.all(players.map(ready)).then(done);
            """
        )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll('#utterances tbody tr')).map("
            "r => Array.from(r.children).map(c => c.dataset.value))"
        )
        header = browser.execute_script(
            "return Array.from(document.querySelectorAll('#utterances th')).map(h => h.textContent)"
        )
        summary_runs = browser.execute_script(
            "return Array.from(document.querySelectorAll('#summary tbody tr')).map(r => r.children[0].dataset.value)"
        )
        shot = Path(os.environ.get("SPECSTORE_SCREENSHOTS", tmp_path)) / "report.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        browser.find_element("xpath", "//table[@id='utterances']//th[2]").click()  # sort by a column
        sorted_values = browser.execute_script(
            "return Array.from(document.querySelectorAll('#utterances tbody tr')).map(r => r.children[1].dataset.value)"
        )
    finally:
        browser.quit()
    assert errors == []
    assert durations and len(durations) % 3 == 0 and all(d > 0 and np.isfinite(d) for d in durations)
    assert set(summary_runs) == {run_id, other}
    # the per-utterance table holds the stored values exactly
    run = Run.load(store, run_id)
    scores = run.scores()
    assert len(cells) == 11
    for row in cells:
        uid = row[0]
        for i, name in enumerate(header[1:], start=1):
            metric, side = name.split(" ")
            if side == "Δ":
                continue
            stored = scores[uid][side][metric]
            assert (row[i] == "") if stored is None or not np.isfinite(stored) else float(row[i]) == stored
    numbers = [float(v) for v in sorted_values if v != ""]
    assert numbers == sorted(numbers)
    # the sample: best, median and worst by improvement, each with three players and a spectrogram image
    assert len(durations) == 3 * len(pick_sample(run, "pesq_wb"))
    assert len(list((out / "img").glob("*.png"))) >= 3


def test_report_of_an_unknown_run_is_refused(runs, tmp_path, capsys):
    store, _, _ = runs
    assert main(["report", "--store", store.root, "--run", "run-nope", "--out", tmp_path / "r"]) == 2
    assert "Expected an evaluation run" in capsys.readouterr().err
    shutil.rmtree(tmp_path, ignore_errors=True)
