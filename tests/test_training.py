"""End-to-end: real (tiny) training runs on the fixture tiles through train.py and the evaluate CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, cache_imagenet_weights, fixture_images
from safetensors.torch import load_file

from cancer_models import Predictor, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
HISTO = str(FIXTURES / "histopathology")
FAST = ["--input-size", "64", "--batch-size", "6", "--warmup-epochs", "0.5", "--augment", "histopathology"]


def run(*args: str, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cnn")
    result = run("train.py", "--data", HISTO, "--output-dir", str(out), "--epochs", "3", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_training_writes_a_hub_ready_folder(trained_cnn):
    for name in ("config.json", "model.safetensors", "README.md", "metrics.json", "history.csv"):
        assert (trained_cnn / name).is_file(), name
    assert {p.name for p in (trained_cnn / "plots").iterdir()} >= {
        "roc.png",
        "precision_recall.png",
        "confusion_matrix.png",
        "reliability.png",
        "distribution.png",
        "history.png",
    }
    assert len((trained_cnn / "history.csv").read_text().strip().splitlines()) == 1 + 3
    assert list((trained_cnn / "logs").rglob("events.out.tfevents.*")), "no TensorBoard log"


def test_trained_model_loads_and_carries_its_facts(trained_cnn):
    model = load_pretrained(trained_cnn)
    config = model.config
    assert config.input_size == 64 and 0 < config.threshold < 1 and config.temperature > 0
    test = config.training["metrics"]["test"]
    assert test["n"] == 6 and test["n_benign"] == 3 and len(test["auc_ci"]) == 2
    assert config.training["splits"] == {"train": 12, "validation": 6, "test": 6}
    card = (trained_cnn / "README.md").read_text()
    assert "model-index" in card and "95% CI" in card and "not a medical device" in card
    assert "| test | 6 | 3 | 3 |" in card
    p = Predictor(model).predict(fixture_images()[0])
    assert 0 <= p.malignant_probability <= 1


def test_transfer_model_with_frozen_phase(tmp_path):
    result = run(
        "train.py",
        "--data",
        HISTO,
        "--output-dir",
        str(tmp_path),
        "--model",
        "resnet34",
        "--epochs",
        "2",
        "--freeze-epochs",
        "1",
        *FAST,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_pretrained(tmp_path)
    assert model.config.architecture == "resnet34" and "pretrained_backbone" not in model.config.model_args


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    args = ["train.py", "--data", HISTO, "--epochs", "4", "--patience", "10", *FAST]
    straight = tmp_path / "straight"
    assert run(*args, "--output-dir", str(straight)).returncode == 0

    resumed = tmp_path / "resumed"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(
        [sys.executable, *args, "--output-dir", str(resumed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state_file = resumed / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 240
    while not state_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill, as when a session ends
    proc.wait()
    epochs_done = json.loads(state_file.read_text())["state"]["epoch"]
    assert epochs_done < 4, "the run finished before it could be interrupted"
    assert not (resumed / "config.json").exists()

    result = run(*args, "--output-dir", str(resumed), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed after epoch {epochs_done}" in result.stdout + result.stderr
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = lambda d: (d / "history.csv").read_text().splitlines()
    strip_time = lambda lines: [line.rsplit(",", 1)[0] for line in lines]
    assert strip_time(history(straight)) == strip_time(history(resumed))


def test_pretrained_backbone_from_the_torch_cache_and_a_clear_error_without_it(tmp_path):
    torch_home = tmp_path / "torch"
    # No network: an unreachable proxy refuses the download at once, wherever the tests run.
    offline = {"TORCH_HOME": str(torch_home), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    offline |= {"no_proxy": "", "NO_PROXY": ""}
    args = ["train.py", "--data", HISTO, "--model", "resnet18", "--pretrained", "--epochs", "1", *FAST]
    missing = run(*args, "--output-dir", str(tmp_path / "no-weights"), env=offline, timeout=120)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "ImageNet weights" in missing.stderr and "resnet18-f37072fd.pth" in missing.stderr, missing.stderr[-2000:]
    assert "train:" not in missing.stdout  # it failed before decoding any image

    cache_imagenet_weights(torch_home, "resnet18")
    result = run(*args, "--output-dir", str(tmp_path / "run"), env=offline)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 12 images" in result.stdout
    model = load_pretrained(tmp_path / "run")  # offline too: loading never fetches ImageNet weights again
    assert "pretrained_backbone" not in model.config.model_args
    assert "resnet18 from ImageNet weights" in (tmp_path / "run" / "README.md").read_text()


def test_bad_inputs_fail_before_training(tmp_path):
    cases = [
        (["--data", str(tmp_path / "missing")], "does not exist"),
        (["--data", HISTO, "--label-column", "diagnosis"], "no label column 'diagnosis'"),
        (["--data", HISTO, "--threshold", "best"], "youden"),
        (["--data", HISTO, "--model", "cancer_cnn", "--freeze-epochs", "2"], "transfer models"),
        (["--data", HISTO, "--resume"], "no checkpoint"),
    ]
    for args, message in cases:
        result = run("train.py", *args, "--output-dir", str(tmp_path / "out"), timeout=120)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "out" / "checkpoint").exists()


def test_class_collapse_is_reported(tmp_path):
    # A learning rate of ~0 leaves the untrained head giving every image the same label.
    result = run("train.py", "--data", HISTO, "--output-dir", str(tmp_path), "--epochs", "1", "--lr", "1e-12", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "class collapse" in result.stdout + result.stderr


def test_evaluate_cli_prints_json_and_writes_a_report(trained_cnn, tmp_path):
    result = run(
        "-m", "cancer_models.evaluate", "--model", str(trained_cnn), "--data", HISTO, "--out", str(tmp_path), "--tta"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "n",
        "auc",
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "ece",
        "threshold",
        "confusion_matrix",
        "auc_ci",
        "accuracy_ci",
    ):
        assert key in metrics, key
    assert metrics["n"] == 6 and metrics["split"] == "test" and metrics["tta"] is True
    assert sum(map(sum, metrics["confusion_matrix"])) == 6
    assert {"report.md", "roc.png", "reliability.png", "confusion_matrix.png"} <= {p.name for p in tmp_path.iterdir()}
    assert "95%" in (tmp_path / "report.md").read_text()

    flat = run(
        "-m", "cancer_models.evaluate", "--model", str(trained_cnn), "--data", str(FIXTURES / "dermoscopy" / "test")
    )
    assert flat.returncode == 0, flat.stderr[-3000:]
    assert json.loads(flat.stdout.strip().splitlines()[-1])["n"] == 4


def test_evaluate_cli_bad_split(trained_cnn):
    result = run("-m", "cancer_models.evaluate", "--model", str(trained_cnn), "--data", HISTO, "--split", "holdout")
    assert result.returncode != 0 and "no split 'holdout'" in result.stderr


def test_push_to_hub_dry_run_and_offline_failures(trained_cnn, tmp_path):
    dry = run("push_to_hub.py", str(trained_cnn), "someone/cancer-cnn", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = dry.stdout
    assert "model.safetensors" in listed and "config.json" in listed and "README.md" in listed
    assert "checkpoint" not in listed and "best.safetensors" not in listed

    no_token = run(
        "push_to_hub.py", str(trained_cnn), "someone/cancer-cnn", env={"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf")}
    )
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr

    not_a_model = run("push_to_hub.py", str(tmp_path), "someone/cancer-cnn", "--dry-run")
    assert not_a_model.returncode == 2 and "not a publishable model folder" in not_a_model.stderr


def test_two_processes_count_every_image_once(tmp_path):
    """Distributed run on the CPU (gloo): 6 validation/test images over 2 processes x batch 4 means padded
    batches; gather_for_metrics must drop the padding so every image counts exactly once."""
    result = run(
        "-m", "torch.distributed.run", "--nproc_per_node", "2", "train.py", "--data", HISTO,
        "--output-dir", str(tmp_path), "--epochs", "2", "--input-size", "64", "--batch-size", "4",
        "--model", "resnet34", "--freeze-epochs", "1",
        env={"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 6 and metrics["test"]["n"] == 6
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 6
    assert "x 2 process(es)" in (tmp_path / "README.md").read_text()
    assert {p.name for p in (tmp_path / "checkpoint").glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }


def test_compiled_training_saves_loadable_weights(tmp_path):
    # torch.compile wraps the model; saved names must not carry its "_orig_mod." prefix.
    result = run("train.py", "--data", HISTO, "--output-dir", str(tmp_path), "--epochs", "1", "--compile", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_pretrained(tmp_path)
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())


@pytest.mark.parametrize("architecture", ["cancer_cnn", "resnet34"])
def test_a_training_step_never_reads_tensor_values_back(architecture):
    """The step of train.py's loop on the meta device, where any value read (.item(), masks, `if t > 0`) raises:
    on a GPU such a read makes the CPU wait every step instead of queuing the next one."""
    from torch import nn

    from cancer_models import create_model
    from cancer_models.augment import build_augmentation
    from cancer_models.training import training_batch

    with torch.device("meta"):
        model = create_model(architecture, input_size=64).train()
    optimizer = torch.optim.AdamW(model.parameters(), foreach=True)  # fused has no meta kernel
    images = torch.empty(8, 3, 64, 64, dtype=torch.uint8, device="meta")
    x = training_batch(images, build_augmentation("histopathology").to("meta"), model.config.mean, model.config.std)
    loss = nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long, device="meta"))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    assert all(p.grad is not None for p in model.parameters())
