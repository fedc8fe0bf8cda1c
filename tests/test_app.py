"""The Gradio app, served for real: API calls through gradio_client, and a headless Chromium browser."""

import json
import os
import re
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
from cancer_models.reporting.model_folder import save_model_folder

gradio_client = pytest.importorskip("gradio_client")
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
def catalog_folder(tmp_path_factory, _briefly_trained_cnn):
    """A catalog of a local model, a Hub-cached copy of it, a missing one and two shipped models."""
    tmp = tmp_path_factory.mktemp("app")
    save_model_folder(_briefly_trained_cnn, tmp / "model")
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
    return tmp


@pytest.fixture(scope="module")
def app(catalog_folder, _briefly_trained_cnn, monkeypatch_module):
    """The page's handlers in this process (``create_app().app_state``): no server where a server is not the point."""
    import app as app_module
    from catalog import load_catalog

    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch_module.setenv("HF_HUB_CACHE", str(catalog_folder / "hf-cache"))
    monkeypatch_module.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch_module.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(catalog_folder / "hf-cache"))
    demo = app_module.create_app(load_catalog(catalog_folder / "catalog.json"), warm_up=False)
    return demo.app_state


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def served(catalog_folder, _briefly_trained_cnn):
    """app.py in a subprocess: what gradio_client and a browser talk to."""
    tmp = catalog_folder
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
    return client.predict(handle_file(str(path)), model, method, 0.5, tta, 0, api_name="/predict")


def _answer(app, path, model=LOCAL, method="gradcam", tta=False):
    """The single-image tab's answer in-process: (headline, probabilities), text, overlay, panel, analysis."""
    return app.predict(str(path), model, method, 0.5, tta)


@pytest.mark.slow  # also asks app.py served in its own process
def test_single_prediction_matches_the_library(app, served, client, _briefly_trained_cnn):
    image = fixture_images()[0]
    (headline, probabilities), decision, overlay, panel, _ = _answer(app, image)
    expected = Predictor(_briefly_trained_cnn).predict(image)
    assert headline == expected.decision == expected.label  # a model without conformal data: the threshold
    assert probabilities["malignant"] == pytest.approx(expected.malignant_probability, abs=1e-4)
    assert expected.label.capitalize() in decision and "not a diagnosis" in decision and "histopathology" in decision
    assert overlay.shape[:2] == Image.open(image).size[::-1]
    assert "bundled folder" in panel and "Research" in panel
    # Over HTTP, as gradio_client sees it: the same answer.
    label, served_decision, served_overlay, _ = _predict(client, image)
    assert label["label"] == headline and served_decision == decision and Path(served_overlay).is_file()


def test_hub_model_comes_from_the_hub_cache(app):
    *_, panel, _ = _answer(app, fixture_images()[1], model=HUB)
    assert "Hugging Face Hub (cancer-models/test-cnn)" in panel


def test_tta_and_other_cam_methods(app):
    _, decision, overlay, _, _ = _answer(app, fixture_images()[2], method="layercam", tta=True)
    assert "8 orientations" in decision and "(layercam)" in decision and overlay is not None


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"just some text", "not an image file"), (None, "corrupt or truncated")],
    ids=["empty", "text", "truncated"],
)
@pytest.mark.slow
def test_bad_files_get_a_readable_message(client, tmp_path, content, message):
    bad = tmp_path / "upload.jpg"
    bad.write_bytes(content if content is not None else fixture_images()[0].read_bytes()[:300])
    with pytest.raises(AppError, match=message) as info:
        _predict(client, bad)
    assert "/tmp/gradio" not in str(info.value) and "Traceback" not in str(info.value)
    _predict(client, fixture_images()[0])  # still serving


def test_unavailable_model_is_reported(app):
    import gradio as gr

    with pytest.raises(gr.Error, match="unavailable.*not a model folder"):
        _answer(app, fixture_images()[0], model=BROKEN)


def test_batch_returns_a_table_and_csv(app, catalog_folder, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    files = [*fixture_images()[:3], bad]
    table, csv_path = app.predict_batch([str(f) for f in files], LOCAL, False)
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == {f.name for f in files}
    assert rows["broken.png"][2] == "" and "not an image file we can read (JPEG, PNG" in rows["broken.png"][7]
    expected = Predictor(load_pretrained(catalog_folder / "model")).predict(files[:3])
    assert [rows[f.name][2] for f in files[:3]] == [p.decision for p in expected]
    lines = Path(csv_path).read_text().strip().splitlines()
    assert lines[0] == "file,model,decision,p_malignant,threshold,prediction_set,unusualness,error" and len(lines) == 5


def test_an_image_of_another_modality_gets_no_verdict(app, tmp_path):
    ultrasound = fixture_images("ultrasound", "test")[0]
    (headline, probabilities), decision, overlay, _, analysis = _answer(app, ultrasound, model=SHIPPED)
    assert headline == "not recognised" and probabilities == {} and overlay is None
    assert "does not look like the histopathology images" in decision and "Benign" not in decision
    report = Path(app.write_report(analysis, "gradcam", 0.5)).read_text()
    assert "no model's test figures apply" in report and "Measured on its held-out test split" not in report
    tile = fixture_images()[0]
    (headline, probabilities), decision, overlay, _, _ = _answer(app, tile, model=SHIPPED)
    expected = Predictor(load_pretrained(ROOT / "models" / "histopathology-cancer-cnn")).predict(tile)
    assert headline == expected.decision and expected.decision != "not recognised"
    assert "points at the lesion has not been measured" in decision  # no lesion masks for histopathology
    assert probabilities["malignant"] == pytest.approx(expected.malignant_probability, abs=1e-4)

    table, csv_path = app.predict_batch([str(ultrasound), str(tile)], SHIPPED, False)
    refused, answered = table["data"]
    assert [refused[2], answered[2]] == ["not recognised", expected.decision]
    assert refused[3] == refused[4] == "" and float(refused[6]) > 1  # no probability; unusualness past 1x
    assert refused[1] == f"none (closest: {SHIPPED})"  # the unusualness has an owner
    assert float(answered[3]) == pytest.approx(expected.malignant_probability, abs=1e-4)
    assert Path(csv_path).read_text().splitlines()[1].split(",")[2:5] == ["not recognised", "", ""]


def test_automatic_choice_routes_each_kind_to_its_model(app):
    tile, scan = fixture_images()[0], fixture_images("ultrasound", "test")[0]
    (headline, _), decision, _, panel, _ = _answer(app, tile, model=AUTOMATIC)
    assert "Chosen automatically" in decision and "histopathology" in decision and headline != "not recognised"
    assert f"### {SHIPPED}" in panel or f"### {LOCAL}" in panel or f"### {HUB}" in panel
    _, decision, _, panel, _ = _answer(app, scan, model=AUTOMATIC)
    assert f"### {ULTRASOUND}" in panel and "ultrasound images" in decision
    skimage = pytest.importorskip("skimage")
    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"  # no model's kind: no verdict, no map
    (headline, probabilities), decision, overlay, _, analysis = _answer(app, photo, model=AUTOMATIC)
    assert headline == "not recognised" and probabilities == {} and overlay is None
    assert "None of the models recognises this image" in decision
    assert "This model is for" not in decision  # no model was used: none is spoken for
    report = Path(app.write_report(analysis, "gradcam", 0.5)).read_text()
    assert "no model's test figures apply" in report and "Measured on its held-out test split" not in report


def test_the_map_comes_with_its_measured_reliability(app):
    config = load_pretrained(ROOT / "models" / "ultrasound-cancer-cnn").config
    measured = config.training.explanations
    lesion = fixture_images("ultrasound", "test")[-1]  # malignant_44
    _, decision, overlay, _, _ = _answer(app, lesion, model=ULTRASOUND, method=config.cam_method)
    assert overlay is not None
    assert f"this model's default map ({config.cam_method}) peaked inside the lesion" in decision
    assert f"{measured['peak_in_lesion']['mean']:.0%} of the time" in decision and "not measured" not in decision
    other = next(m for m in ("gradcam", "eigencam") if m != config.cam_method)
    _, decision, _, _, _ = _answer(app, lesion, model=ULTRASOUND, method=other)
    assert f"This map uses {other}, which was not measured." in decision


@pytest.mark.slow
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


@pytest.mark.slow
def test_in_a_real_browser(served, tmp_path):
    from test_dicom import write_dicom

    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served["url"])
        warning = page.get_by_text("Research software, not a medical device.")
        expect(warning).to_be_visible(timeout=30_000)
        assert warning.bounding_box()["y"] < 900, "the warning must be visible without scrolling"
        upload, analyse = page.locator("#upload"), page.get_by_role("button", name="Analyse", exact=True)

        def choose(path) -> None:  # one input: empty it, then drop the file on it
            if upload.locator("button[aria-label=Clear]").count():
                upload.locator("button[aria-label=Clear]").click()
            upload.locator("input[type=file]").set_input_files(str(path))

        choose(fixture_images()[0])
        expect(page.locator("#preview img")).to_be_visible(timeout=30_000)
        analyse.click()
        decision = page.locator("#decision")
        expect(decision).to_contain_text("not a diagnosis", timeout=60_000)
        assert any(word in decision.inner_text() for word in ("Benign", "Malignant"))
        expect(page.locator("#overlay img").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-prediction.png"), full_page=True)

        # An example click replaces the image: no answer of the previous one stays on screen.
        page.get_by_text("dermoscopy_benign_isic109.jpg").first.click()
        expect(page.locator("#truth textarea")).to_have_value("benign (dermoscopy, a test image)", timeout=30_000)
        expect(decision).not_to_contain_text("not a diagnosis", timeout=30_000)
        expect(page.locator("#overlay img")).to_have_count(0)
        expect(page.locator("#report a")).to_have_count(0)

        corrupt = tmp_path / "corrupt.jpg"
        corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        choose(corrupt)
        analyse.click()
        expect(page.get_by_text("cannot be analysed").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-bad-file.png"))  # the viewport: error toasts are fixed-position

        # A DICOM file dropped on the same box: shown as the model sees it, and answered.
        scan = np.asarray(Image.open(fixture_images("ultrasound", "test")[-1]).convert("RGB"))
        choose(write_dicom(tmp_path / "scan.dcm", scan, "RGB"))
        expect(page.locator("#preview img")).to_be_visible(timeout=30_000)
        analyse.click()
        expect(decision).to_contain_text("ultrasound images", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "app-dicom.png"), full_page=True)

        # An image of another modality for a model chosen by hand: "not recognised", no verdict word, no map.
        page.reload()
        page.get_by_label("Model (modality and architecture)").click()
        page.get_by_role("option", name=SHIPPED).click()
        choose(fixture_images("ultrasound", "test")[0])
        analyse.click()
        expect(decision).to_contain_text("Not recognised", timeout=60_000)
        expect(page.locator("#verdict")).to_contain_text("not recognised")
        assert "Benign" not in decision.inner_text()
        page.screenshot(path=str(ARTIFACTS / "app-not-recognised.png"), full_page=True)

        # Automatic choice, the map re-rendered from the same answer, a report to download, and no stale answer.
        page.reload()
        choose(fixture_images("ultrasound", "test")[-1])
        analyse.click()
        expect(decision).to_contain_text("Chosen automatically", timeout=60_000)
        expect(decision).to_contain_text("ultrasound images")
        expect(page.locator("#report a").first).to_be_visible(timeout=30_000)
        with page.expect_download() as download:
            page.locator("#report a").first.click()
        report = Path(download.value.path()).read_text()
        headline = page.locator("#decision strong").first.inner_text().lower().rstrip(".")
        assert "Research software, not a medical device" in report and "data:image/png;base64," in report
        assert f'id="verdict">{headline}</p>' in report  # the report says what the page says
        page.get_by_text("Options").click()
        page.get_by_label("Explanation method").click()
        page.get_by_role("option", name="eigencam").click()
        expect(decision).to_contain_text("(eigencam)", timeout=30_000)
        expect(page.locator("#overlay img").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "app-automatic.png"), full_page=True)
        choose(fixture_images()[0])
        expect(decision).not_to_contain_text("Chosen automatically", timeout=30_000)
        expect(page.locator("#overlay img")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "app-cleared.png"), full_page=True)

        # Batch: every row names a model, a refused one the closest; no header breaks inside a word.
        page.get_by_role("tab", name="Batch").click()
        files = [fixture_images()[0], fixture_images("ultrasound", "test")[0]]
        page.locator("input[type=file]").first.set_input_files([str(f) for f in files])
        page.get_by_role("button", name="Analyse all").click()
        table = page.locator("#batch")
        expect(table).to_contain_text("prediction_set", timeout=60_000)
        expect(table).to_contain_text("unusualness")
        for header in ("p_malignant", "prediction_set", "unusualness"):
            cell = table.get_by_text(header, exact=True).first
            assert cell.bounding_box()["height"] < 30, f"the header {header} wraps"
        page.screenshot(path=str(ARTIFACTS / "app-batch.png"), full_page=True)

        # Slides: the map comes with its legend; a new model clears the summary of the old one.
        from test_slides import mosaic

        mosaic()[0].save(tmp_path / "field.png")
        page.get_by_role("tab", name="Large image / slide").click()
        page.locator("#slide-file input[type=file]").set_input_files(str(tmp_path / "field.png"))
        page.get_by_role("button", name="Analyse slide").click()
        summary = page.locator("#slide-summary")
        expect(summary).to_contain_text("tissue tiles", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "app-slide.png"), full_page=True)
        page.get_by_label("Model (modality and architecture)").click()
        page.get_by_role("option", name=SHIPPED).click()
        expect(summary).not_to_contain_text("tissue tiles", timeout=30_000)
        browser.close()


@pytest.mark.slow
def test_uploads_over_the_limit_are_refused(client, tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (21 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)maximum|too large|exceeds|413"):
        _predict(client, big)
    _predict(client, fixture_images()[0])  # still serving


def test_large_images_are_mapped_tile_by_tile(app, tmp_path):
    import gradio as gr
    from test_slides import CELL, PATTERN, mosaic

    image, _ = mosaic()
    field = tmp_path / "field.png"
    image.save(field)
    overlay, summary, top, files = app.analyse_slide(str(field), SHIPPED, CELL, 0.0, progress=lambda *a, **k: None)
    tissue = sum(k != "." for row in PATTERN for k in row)
    assert f"**{tissue} tissue tiles** of {len(PATTERN) * len(PATTERN[0])}" in summary and "1 refused" in summary
    assert overlay.ndim == 3 and top["data"][0][4] in ("malignant", "uncertain")
    assert all(row[4] != "benign" for row in top["data"])
    names = sorted(Path(f).name for f in files)
    assert names == ["field.geojson", "field.heatmap.png", "field.summary.json", "field.tiles.csv"]
    # The same field in the single-image tab says it was shrunk and points to the slide tab.
    _, decision, _, _, _ = _answer(app, field, model=SHIPPED)
    assert "800x640 pixels" in decision and "Large image / slide" in decision
    with pytest.raises(gr.Error, match="cannot be analysed"):
        app.analyse_slide(str(Path(__file__)), SHIPPED, 0, 0.0, progress=lambda *a, **k: None)


def test_a_dicom_file_gets_the_answer_of_the_same_pixels_and_no_name(app, tmp_path):
    from test_dicom import PATIENT, write_dicom

    scan = fixture_images("ultrasound", "test")[0]
    pixels = np.asarray(Image.open(scan).convert("RGB"))
    png, dcm = tmp_path / "scan.png", write_dicom(tmp_path / "scan.dcm", pixels, "RGB")
    Image.fromarray(pixels).save(png)
    as_png = _answer(app, png, model=ULTRASOUND)
    as_dicom = _answer(app, dcm, model=ULTRASOUND)
    assert as_dicom[0] == as_png[0] and as_dicom[1] == as_png[1]
    preview, _ = app.preview(str(dcm))
    assert np.array_equal(np.asarray(preview), pixels)
    table, csv_path = app.predict_batch([str(dcm)], ULTRASOUND, False)
    report = Path(app.write_report(as_dicom[4], "gradcam", 0.5)).read_text()
    report = re.sub(r"data:image/png;base64,[^\"]+", "", report)  # pictures, whose letters mean nothing
    everything = json.dumps(as_dicom[:2]) + as_dicom[1] + as_dicom[3] + json.dumps(table)
    everything += Path(csv_path).read_text() + report
    assert table["data"][0][2] == as_png[0][0]
    assert PATIENT.split("^")[0] not in everything and "12345" not in everything


def test_a_multi_frame_dicom_shows_a_frame_slider_and_answers_for_the_frame_shown(app, tmp_path):
    from test_dicom import write_dicom

    scan = np.asarray(Image.open(fixture_images("ultrasound", "test")[0]).convert("L"))
    dcm = write_dicom(tmp_path / "cine.dcm", np.stack([scan, 255 - scan]), "MONOCHROME2", frames=2)
    preview, slider = app.preview(str(dcm), 1)
    assert slider["visible"] and slider["maximum"] == 1 and np.array_equal(np.asarray(preview)[..., 0], 255 - scan)
    first, second = _answer(app, dcm, model=ULTRASOUND), app.predict(str(dcm), ULTRASOUND, "gradcam", 0.5, False, 1)
    expected = Predictor(load_pretrained(ROOT / "models" / "ultrasound-cancer-cnn")).predict([scan, 255 - scan])
    assert [first[0][0], second[0][0]] == [p.decision for p in expected]
