"""The Gradio app, served for real: API calls through gradio_client, and a headless Chromium browser."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_images, lay_out_as_hub_cache
from PIL import Image

from cancer_models import Predictor, load_pretrained

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow  # every test here talks to app.py served in its own process
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "Histopathology · test CNN"
HUB = "Histopathology · test CNN (Hub)"
BROKEN = "Dermoscopy · missing"
SHIPPED = "Histopathology · shipped CNN"
AUTOMATIC = "Automatic (the model whose kind of image this is)"
ULTRASOUND = "Ultrasound · shipped CNN"
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, _briefly_trained_cnn):
    """app.py in a subprocess, with a catalog of a local model, a Hub-cached copy and a missing one."""
    tmp = tmp_path_factory.mktemp("app")
    _briefly_trained_cnn.save_pretrained(tmp / "model")
    lay_out_as_hub_cache(tmp / "hf-cache", "cancer-models/test-cnn", tmp / "model")
    catalog = [
        {"name": LOCAL, "modality": "histopathology", "local_dir": "model"},
        {"name": HUB, "modality": "histopathology", "repo_id": "cancer-models/test-cnn"},
        {"name": BROKEN, "modality": "dermoscopy", "local_dir": "does-not-exist"},
        {
            "name": SHIPPED,
            "modality": "histopathology",
            "local_dir": str(ROOT / "models" / "histopathology-cancer-cnn"),
        },
        {"name": ULTRASOUND, "modality": "ultrasound", "local_dir": str(ROOT / "models" / "ultrasound-cancer-cnn")},
    ]
    (tmp / "catalog.json").write_text(json.dumps(catalog))
    port = _free_port()
    env = {
        **os.environ,
        "CANCER_MODELS_CATALOG": str(tmp / "catalog.json"),
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp / "hf-cache"),
        "OMP_NUM_THREADS": "2",
    }
    with open(tmp / "server.log", "w") as log:  # the child keeps its own handle
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"app did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.1)
    yield {"url": url, "model": _briefly_trained_cnn, "tmp": tmp}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(served):
    return Client(served["url"], verbose=False)


def _predict(client, path, model=LOCAL, method="gradcam", tta=False):
    return client.predict(handle_file(str(path)), model, method, 0.5, tta, api_name="/predict")


def test_single_prediction_matches_the_library(client, served):
    image = fixture_images()[0]
    label, decision, overlay, panel = _predict(client, image)
    expected = Predictor(served["model"]).predict(image)
    assert label["label"] == expected.decision == expected.label  # a model without conformal data: the threshold
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences["malignant"] == pytest.approx(expected.malignant_probability, abs=1e-4)
    assert expected.label.capitalize() in decision and "not a diagnosis" in decision and "histopathology" in decision
    assert Path(overlay).is_file()
    assert "bundled folder" in panel and "Research" in panel


def test_hub_model_comes_from_the_hub_cache(client):
    *_, panel = _predict(client, fixture_images()[1], model=HUB)
    assert "Hugging Face Hub (cancer-models/test-cnn)" in panel


def test_tta_and_other_cam_methods(client):
    _, decision, overlay, _ = _predict(client, fixture_images()[2], method="layercam", tta=True)
    assert "8 orientations" in decision and Path(overlay).is_file()


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"just some text", "not an image file"), (None, "corrupt or truncated")],
    ids=["empty", "text", "truncated"],
)
def test_bad_files_get_a_readable_message(client, tmp_path, content, message):
    bad = tmp_path / "upload.jpg"
    bad.write_bytes(content if content is not None else fixture_images()[0].read_bytes()[:300])
    with pytest.raises(AppError, match=message) as info:
        _predict(client, bad)
    assert "/tmp/gradio" not in str(info.value) and "Traceback" not in str(info.value)
    _predict(client, fixture_images()[0])  # still serving


def test_unavailable_model_is_reported(client):
    with pytest.raises(AppError, match="unavailable.*not a model folder"):
        _predict(client, fixture_images()[0], model=BROKEN)


def test_batch_returns_a_table_and_csv(client, served, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    files = [*fixture_images()[:3], bad]
    table, csv_path = client.predict([handle_file(str(f)) for f in files], LOCAL, False, api_name="/predict_batch")
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == {f.name for f in files}
    assert rows["broken.png"][2] == "" and "not an image file we can read (JPEG, PNG" in rows["broken.png"][7]
    expected = Predictor(load_pretrained(served["tmp"] / "model")).predict(files[:3])
    assert [rows[f.name][2] for f in files[:3]] == [p.decision for p in expected]
    lines = Path(csv_path).read_text().strip().splitlines()
    assert lines[0] == "file,model,decision,p_malignant,threshold,prediction_set,unusualness,error" and len(lines) == 5


def test_an_image_of_another_modality_gets_no_verdict(client, tmp_path):
    ultrasound = fixture_images("ultrasound", "test")[0]
    label, decision, overlay, _ = _predict(client, ultrasound, model=SHIPPED)
    assert label["label"] == "not recognised" and not label.get("confidences") and overlay is None
    assert "does not look like the histopathology images" in decision and "Benign" not in decision
    tile = fixture_images()[0]
    label, decision, overlay, _ = _predict(client, tile, model=SHIPPED)
    expected = Predictor(load_pretrained(ROOT / "models" / "histopathology-cancer-cnn")).predict(tile)
    assert label["label"] == expected.decision and expected.decision != "not recognised"
    assert "points at the lesion has not been measured" in decision  # no lesion masks for histopathology
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences["malignant"] == pytest.approx(expected.malignant_probability, abs=1e-4)

    table, csv_path = client.predict(
        [handle_file(str(ultrasound)), handle_file(str(tile))], SHIPPED, False, api_name="/predict_batch"
    )
    refused, answered = table["data"]
    assert [refused[2], answered[2]] == ["not recognised", expected.decision]
    assert refused[3] is None and refused[4] is None and refused[6] > 1  # no probability; unusualness past 1x
    assert answered[3] == pytest.approx(expected.malignant_probability, abs=1e-4)
    assert Path(csv_path).read_text().splitlines()[1].split(",")[2:5] == ["not recognised", "", ""]


def test_automatic_choice_routes_each_kind_to_its_model(client):
    tile, scan = fixture_images()[0], fixture_images("ultrasound", "test")[0]
    label, decision, _, panel = _predict(client, tile, model=AUTOMATIC)
    assert "Chosen automatically" in decision and "histopathology" in decision and label["label"] != "not recognised"
    assert f"### {SHIPPED}" in panel or f"### {LOCAL}" in panel or f"### {HUB}" in panel
    label, decision, _, panel = _predict(client, scan, model=AUTOMATIC)
    assert f"### {ULTRASOUND}" in panel and "ultrasound images" in decision
    skimage = pytest.importorskip("skimage")
    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"  # no model's kind: no verdict, no map
    label, decision, overlay, _ = _predict(client, photo, model=AUTOMATIC)
    assert label["label"] == "not recognised" and not label.get("confidences") and overlay is None
    assert "None of the models recognises this image" in decision


def test_the_map_comes_with_its_measured_reliability(client):
    config = load_pretrained(ROOT / "models" / "ultrasound-cancer-cnn").config
    measured = config.training.explanations
    lesion = fixture_images("ultrasound", "test")[-1]  # malignant_44
    _, decision, overlay, _ = _predict(client, lesion, model=ULTRASOUND, method=config.cam_method)
    assert overlay is not None
    assert f"this model's default map ({config.cam_method}) peaked inside the lesion" in decision
    assert f"{measured['peak_in_lesion']['mean']:.0%} of the time" in decision and "not measured" not in decision
    other = next(m for m in ("gradcam", "eigencam") if m != config.cam_method)
    _, decision, _, _ = _predict(client, lesion, model=ULTRASOUND, method=other)
    assert f"This map uses {other}, which was not measured." in decision


def test_twenty_concurrent_requests(client, served):
    images = (fixture_images() + fixture_images("histopathology", "validation")) * 2
    images = images[:20]
    expected = [p.label for p in Predictor(served["model"]).predict(images)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda im: _predict(Client(served["url"], verbose=False), im)[0]["label"], images))
    assert results == expected


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    return path


def test_in_a_real_browser(served, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
    ]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served["url"])
        warning = page.get_by_text("Research software, not a medical device.")
        sync_api.expect(warning).to_be_visible(timeout=30_000)
        assert warning.bounding_box()["y"] < 900, "the warning must be visible without scrolling"

        page.locator("input[type=file]").first.set_input_files(str(fixture_images()[0]))
        page.get_by_role("button", name="Analyse", exact=True).click()
        decision = page.locator("#decision")
        sync_api.expect(decision).to_contain_text("not a diagnosis", timeout=60_000)
        assert any(word in decision.inner_text() for word in ("Benign", "Malignant"))
        overlay = page.locator("#overlay img")
        sync_api.expect(overlay.first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-prediction.png"), full_page=True)

        corrupt = tmp_path / "corrupt.jpg"
        corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        page.get_by_role("button", name="Remove Image").first.click()
        page.locator("input[type=file]").first.set_input_files(str(corrupt))
        page.get_by_role("button", name="Analyse", exact=True).click()
        sync_api.expect(page.get_by_text("cannot be analysed").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-bad-file.png"))  # the viewport: error toasts are fixed-position

        # An image of another modality: the headline says "not recognised", with no verdict word and no map.
        page.reload()
        page.get_by_label("Model (modality and architecture)").click()
        page.get_by_role("option", name=SHIPPED).click()
        page.locator("input[type=file]").first.set_input_files(str(fixture_images("ultrasound", "test")[0]))
        page.get_by_role("button", name="Analyse", exact=True).click()
        sync_api.expect(page.locator("#decision")).to_contain_text("Not recognised", timeout=60_000)
        sync_api.expect(page.locator("#verdict")).to_contain_text("not recognised")
        assert "Benign" not in page.locator("#decision").inner_text()
        page.screenshot(path=str(ARTIFACTS / "app-not-recognised.png"), full_page=True)

        # Automatic choice, the map re-rendered from the same answer, a report to download, and no stale answer.
        page.reload()
        page.locator("input[type=file]").first.set_input_files(str(fixture_images("ultrasound", "test")[-1]))
        page.get_by_role("button", name="Analyse", exact=True).click()
        sync_api.expect(page.locator("#decision")).to_contain_text("Chosen automatically", timeout=60_000)
        sync_api.expect(page.locator("#decision")).to_contain_text("ultrasound images")
        sync_api.expect(page.locator("#report a").first).to_be_visible(timeout=30_000)
        with page.expect_download() as download:
            page.locator("#report a").first.click()
        report = Path(download.value.path()).read_text()
        headline = page.locator("#decision strong").first.inner_text().lower().rstrip(".")
        assert "Research software, not a medical device" in report and "data:image/png;base64," in report
        assert f'id="verdict">{headline}</p>' in report  # the report says what the page says
        page.get_by_text("Options").click()
        page.get_by_label("Explanation method").click()
        page.get_by_role("option", name="eigencam").click()
        sync_api.expect(page.locator("#decision")).to_contain_text("(eigencam)", timeout=30_000)
        sync_api.expect(page.locator("#overlay img").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "app-automatic.png"), full_page=True)
        page.get_by_role("button", name="Remove Image").first.click()
        page.locator("input[type=file]").first.set_input_files(str(fixture_images()[0]))
        sync_api.expect(page.locator("#decision")).not_to_contain_text("Chosen automatically", timeout=30_000)
        sync_api.expect(page.locator("#overlay img")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "app-cleared.png"), full_page=True)
        browser.close()


def test_uploads_over_the_limit_are_refused(client, tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (21 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)maximum|too large|exceeds|413"):
        _predict(client, big)
    _predict(client, fixture_images()[0])  # still serving


def test_large_images_are_mapped_tile_by_tile(client, tmp_path):
    from test_slides import CELL, PATTERN, mosaic

    image, _ = mosaic()
    field = tmp_path / "field.png"
    image.save(field)
    overlay, summary, top, files = client.predict(
        handle_file(str(field)), SHIPPED, CELL, 0.0, api_name="/predict_slide"
    )
    tissue = sum(k != "." for row in PATTERN for k in row)
    assert f"**{tissue} tissue tiles** of {len(PATTERN) * len(PATTERN[0])}" in summary and "1 refused" in summary
    assert Path(overlay).is_file() and top["data"][0][4] in ("malignant", "uncertain")
    names = sorted(Path(f).name for f in files)
    assert names == ["field.geojson", "field.heatmap.png", "field.summary.json", "field.tiles.csv"]
    # The same field in the single-image tab says it was shrunk and points to the slide tab.
    _, decision, _, _ = _predict(client, field, model=SHIPPED)
    assert "800x640 pixels" in decision and "Large image / slide" in decision
    with pytest.raises(AppError, match="cannot be analysed"):
        client.predict(handle_file(str(Path(__file__))), SHIPPED, 0, 0.0, api_name="/predict_slide")


def test_a_dicom_file_gets_the_answer_of_the_same_pixels_and_no_name(client, tmp_path):
    from test_dicom import PATIENT, write_dicom

    scan = fixture_images("ultrasound", "test")[0]
    pixels = np.asarray(Image.open(scan).convert("RGB"))
    png, dcm = tmp_path / "scan.png", write_dicom(tmp_path / "scan.dcm", pixels, "RGB")
    Image.fromarray(pixels).save(png)
    as_png = client.predict(handle_file(str(png)), ULTRASOUND, "gradcam", 0.5, False, api_name="/predict")
    as_dicom = client.predict(
        handle_file(str(png)), ULTRASOUND, "gradcam", 0.5, False, handle_file(str(dcm)), 0, api_name="/predict"
    )
    assert as_dicom[0] == as_png[0] and as_dicom[1] == as_png[1]
    table, csv_path = client.predict([handle_file(str(dcm))], ULTRASOUND, False, api_name="/predict_batch")
    everything = json.dumps(as_dicom[:2]) + as_dicom[3] + json.dumps(table) + Path(csv_path).read_text()
    assert table["data"][0][2] == as_png[0]["label"]
    assert PATIENT.split("^")[0] not in everything and "12345" not in everything
