"""Real (tiny) training runs on the fixture tiles through train.py's main, in this process; the runs that need
a process of their own (a hard kill, two ranks) are marked slow."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, cache_imagenet_weights, fixture_images
from safetensors.torch import load_file
from torch import nn

from cancer_models import Predictor, create_model, load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.augment import build_augmentation
from cancer_models.training.checkpoint import save_best_weights
from cancer_models.training.config import TrainConfig
from cancer_models.training.loop import training_batch
from cancer_models.training.optim import build_optimizer, build_schedulers

ROOT = Path(__file__).resolve().parents[1]
HISTO = str(FIXTURES / "histopathology")
FAST = ["--input-size", "64", "--batch-size", "6", "--warmup-epochs", "0.5", "--augment", "histopathology"]


def train(capsys, *args: str) -> tuple[int, str]:
    """train.py's main in this process; returns its exit code and everything it printed."""
    code = cli_main(["train", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **extra}


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cnn")
    assert cli_main(["train", "--data", HISTO, "--output-dir", str(out), "--epochs", "3", *FAST]) == 0
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


def test_trained_model_carries_its_facts_and_provenance(trained_cnn):
    config = load_pretrained(trained_cnn).config
    assert config.input_size == 64 and 0 < config.threshold < 1 and config.temperature > 0
    test = config.training.metrics["test"]
    assert test["n"] == 6 and test["n_benign"] == 3 and len(test["auc_ci"]) == 2
    assert config.training.splits == {"train": 12, "validation": 6, "test": 6}
    provenance = config.training.provenance
    assert provenance.torch in (torch.__version__, torch.__version__.split("+")[0])
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    head = git.stdout.strip()
    if head:  # a checkout (CI's clean clone is one)
        assert provenance.git_commit.removesuffix("-dirty") == head
    assert provenance.package_version and provenance.torchvision
    gpu = torch.cuda.is_available()
    hardware = provenance.hardware
    assert (hardware.device, hardware.processes) == (("cuda", 1) if gpu else ("cpu", 1))
    assert str(hardware).startswith(f"1 x {torch.cuda.get_device_name()}" if gpu else "1 process(es) on CPU")


def test_model_card_has_hub_metadata_and_no_machine_paths(trained_cnn):
    card = (trained_cnn / "README.md").read_text()
    metadata = card.split("---")[1]
    assert "license: other" in metadata and "model-index" in metadata and "library_name: cancer-models" in metadata
    assert "datasets:" not in metadata  # a local folder is not a Hub dataset
    assert "95% CI" in card and "not a medical device" in card and "| test | 6 | 3 | 3 |" in card
    assert str(FIXTURES) not in card and "tests/fixtures" not in card
    # The data is named by its folder; the fixture folder is named like the LC25000 set, so its terms are stated.
    assert "- `histopathology`: LC25000" in card and "## How to cite" in card and "Borkowski" in card
    assert "### Per category (test split)" in card and "| lung_n | benign |" in card


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(tmp_path, capsys):
    args = ["--data", HISTO, "--epochs", "2", "--patience", "10", *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(capsys, *args, "--output-dir", str(straight))[0] == 0

    proc = subprocess.Popen(
        [sys.executable, "train.py", *args, "--output-dir", str(resumed)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state_file = resumed / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 240
    while not state_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill, as when a machine is reclaimed
    proc.wait()
    epochs_done = json.loads(state_file.read_text())["state"]["epoch"]
    assert epochs_done < 2, "the run finished before it could be interrupted"
    assert not (resumed / "config.json").exists()

    code, output = train(capsys, *args, "--output-dir", str(resumed), "--resume")
    assert code == 0, output[-3000:]
    assert f"resumed after epoch {epochs_done}" in output
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = lambda d: (d / "history.csv").read_text().splitlines()
    strip_time = lambda lines: [line.rsplit(",", 1)[0] for line in lines]
    assert strip_time(history(straight)) == strip_time(history(resumed))


@pytest.mark.slow
def test_frozen_epochs_leave_the_backbone_untouched_then_train_it(tmp_path, capsys):
    """--freeze-epochs 1: after the frozen epoch the backbone (weights and BatchNorm statistics) is exactly its
    initial self while the head has learned; in the next epoch the backbone trains too."""
    torch.manual_seed(0)  # what train.py's set_seed(0) does before it builds the model
    initial = create_model("resnet18", input_size=64).state_dict()
    args = ["--data", HISTO, "--model", "resnet18", "--freeze-epochs", "1", *FAST]

    def weights_after(epochs: int) -> dict[str, torch.Tensor]:
        out = tmp_path / f"{epochs}-epochs"
        code, output = train(capsys, *args, "--epochs", str(epochs), "--output-dir", str(out))
        assert code == 0, output[-3000:]
        return load_file(out / "checkpoint" / "model.safetensors")  # the last epoch's weights

    frozen, unfrozen = weights_after(1), weights_after(2)
    backbone = [k for k in initial if k.startswith("features.") and initial[k].is_floating_point()]
    assert all(torch.equal(frozen[k], initial[k]) for k in backbone)
    assert not torch.equal(frozen["head.1.weight"], initial["head.1.weight"])
    assert not all(torch.equal(unfrozen[k], initial[k]) for k in backbone)
    assert not torch.equal(unfrozen["features.1.running_mean"], initial["features.1.running_mean"])


def test_a_frozen_backbone_is_neither_updated_nor_normalised_anew():
    """The mechanics behind --freeze-epochs, on one real optimizer step."""
    torch.manual_seed(0)
    model = create_model("resnet18", input_size=64)
    model.set_backbone_frozen(True)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, 1e-2, 0.1)
    images = torch.stack([Predictor(model).preprocess([p])[0] for p in fixture_images()[:4]])
    x, _ = training_batch(images, build_augmentation("histopathology"), model.config)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 0, 1, 1])).backward()
    assert all(p.grad is None for p in model.features.parameters())
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("features."))  # incl. running stats
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])


def test_schedules_warm_up_then_decay_or_halve_on_a_plateau():
    model = create_model("cancer_cnn", input_size=64)
    cfg = TrainConfig(data=["x"], epochs=3, lr=1.0, warmup_epochs=1.0)
    optimizer = build_optimizer(model, cfg.lr, 0.0)
    per_step, per_epoch = build_schedulers(cfg, optimizer, steps_per_epoch=4)
    assert per_epoch is None
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        per_step.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] < 0.05

    cfg.scheduler = "plateau"
    optimizer = build_optimizer(model, cfg.lr, 0.0)
    per_step, per_epoch = build_schedulers(cfg, optimizer, steps_per_epoch=4)
    for _ in range(4):
        optimizer.step()
        per_step.step()
    for auc in (0.8, 0.8, 0.8):  # the best, then two epochs without improvement
        per_epoch.step(auc)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


@pytest.mark.slow
def test_pretrained_backbone_from_the_torch_cache_and_a_clear_error_without_it(tmp_path, capsys, monkeypatch):
    torch_home = tmp_path / "torch"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(torch_home / "hub"))
    # No network: an unreachable proxy refuses the download at once, wherever the tests run.
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "")
    args = ["--data", HISTO, "--model", "resnet18", "--pretrained", "--epochs", "1", *FAST]
    code, output = train(capsys, *args, "--output-dir", str(tmp_path / "no-weights"))
    assert code != 0 and "Traceback" not in output
    assert "ImageNet weights" in output and "resnet18-f37072fd.pth" in output, output[-2000:]
    assert "train:" not in output  # it failed before decoding any image

    cache_imagenet_weights(torch_home, "resnet18")
    code, output = train(capsys, *args, "--output-dir", str(tmp_path / "run"))
    assert code == 0, output[-3000:]
    assert "train: 12 images" in output
    model = load_pretrained(tmp_path / "run")  # loading never fetches ImageNet weights again
    assert "pretrained_backbone" not in model.config.model_args
    card = (tmp_path / "run" / "README.md").read_text()
    assert "resnet18 from ImageNet weights" in card and "base_model: timm/resnet18.tv_in1k" in card


def test_mask_guided_training_records_its_map_layers(tmp_path, capsys):
    us = str(FIXTURES / "ultrasound")
    args = ["--data", us, "--masks", str(FIXTURES / "ultrasound_masks"), "--mask-loss", "1", "--cam-layers", "stage3.1"]
    code, output = train(capsys, *args, "--output-dir", str(tmp_path), "--epochs", "1", *FAST)
    assert code == 0, output[-3000:]
    config = load_pretrained(tmp_path).config
    assert config.cam_layers == ["stage3.1"]
    assert (
        "share of Grad-CAM heat (stage3.1) outside the lesion, on the 7 of 8 training images" in config.training.recipe
    )


def test_colour_constancy_is_trained_with_recorded_and_applied_when_predicting(tmp_path, capsys):
    code, output = train(capsys, "--data", HISTO, "--output-dir", str(tmp_path), "--epochs", "1", *FAST,
                         "--colour-constancy", "shades_of_gray")  # fmt: skip
    assert code == 0, output[-3000:]
    model = load_pretrained(tmp_path)
    assert model.config.colour_constancy == "shades_of_gray"
    assert "Shades of Gray colour constancy (p = 6)" in model.config.training.recipe
    assert "Shades of Gray colour constancy" in (tmp_path / "README.md").read_text()
    without = load_pretrained(tmp_path)
    without.config.colour_constancy = "none"
    image = fixture_images("histopathology", "test")[0]
    with_cc, plain = Predictor(model), Predictor(without)
    assert with_cc.predict(image).malignant_probability != plain.predict(image).malignant_probability


def test_a_corrupt_image_stops_training_or_is_skipped_and_recorded(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(HISTO, data)
    victim = next((data / "train" / "malignant").glob("*.jpg"))
    victim.write_bytes(b"")
    args = ["--data", str(data), "--epochs", "1", *FAST]
    code, output = train(capsys, *args, "--output-dir", str(tmp_path / "strict"))
    assert code == 2 and victim.name in output and "Traceback" not in output
    code, output = train(capsys, *args, "--output-dir", str(tmp_path / "lenient"), "--skip-bad-images")
    assert code == 0, output[-3000:]
    assert "train: 11 images" in output and f"warning: train: skipped {victim}" in output
    skipped = load_pretrained(tmp_path / "lenient").config.training.skipped_images
    assert list(skipped) == ["train"] and victim.name in skipped["train"][0]


def test_max_steps_stops_mid_epoch_and_still_writes_a_model(tmp_path, capsys):
    # 12 training tiles in batches of 6: 2 steps per epoch, so 3 steps end in the middle of the second epoch.
    args = ["--data", HISTO, "--output-dir", str(tmp_path), "--epochs", "5", "--max-steps", "3", *FAST]
    code, output = train(capsys, *args)
    assert code == 0, output[-3000:]
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["state"]
    assert state["step"] == 3 and state["epoch"] == 2
    assert load_pretrained(tmp_path).config.training.epochs_run == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{tmp}/missing"], "does not exist"),
        (["--data", HISTO, "--label-column", "diagnosis"], "no label column 'diagnosis'"),
        (["--data", HISTO, "--threshold-rule", "best"], "youden"),
        (["--data", HISTO, "--model", "cancer_cnn", "--freeze-epochs", "2"], "transfer models"),
        (["--data", HISTO, "--resume"], "no checkpoint"),
        (["--data", HISTO, "--masks", "a", "b"], "give one each"),
        (["--data", HISTO, "--mask-loss", "1"], "needs --masks"),
        (["--data", HISTO, "--cam-layers", "stage9"], "names a layer cancer_cnn lacks"),
    ],
    ids=[
        "missing-data",
        "wrong-column",
        "bad-threshold",
        "freeze-without-backbone",
        "resume-without-checkpoint",
        "masks-per-source",
        "mask-loss-without-masks",
        "unknown-cam-layer",
    ],
)
def test_bad_inputs_fail_before_training(tmp_path, capsys, args, message):
    code, output = train(capsys, *[a.format(tmp=tmp_path) for a in args], "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "error: " in output and message in output, output[-2000:]
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_class_collapse_is_reported(tmp_path, capsys):
    # A learning rate of ~0 leaves the untrained head giving every image the same label.
    code, output = train(
        capsys, "--data", HISTO, "--output-dir", str(tmp_path), "--epochs", "1", "--lr", "1e-12", *FAST
    )
    assert code == 0, output[-3000:]
    assert "class collapse" in output


def test_evaluate_cli_prints_json_and_writes_a_report(trained_cnn, tmp_path, capsys):
    assert cli_main(["evaluate", "--model", str(trained_cnn), "--data", HISTO, "--out", str(tmp_path), "--tta"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = {"n", "auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "ece", "threshold"}
    assert expected | {"confusion_matrix", "auc_ci", "accuracy_ci"} <= set(metrics)
    assert metrics["n"] == 6 and metrics["split"] == "test" and metrics["tta"] is True
    assert sum(map(sum, metrics["confusion_matrix"])) == 6
    # Per category (the subtype column): the test tiles hold one or two of four LC25000 tissues.
    subtypes = metrics["subtypes"]
    assert sum(s["n"] for s in subtypes.values()) == 6 and subtypes["lung_n"]["metric"] == "specificity"
    assert subtypes["lung_aca"]["metric"] == "sensitivity" and all(s["too_few"] for s in subtypes.values())
    assert {"report.md", "roc.png", "reliability.png", "confusion_matrix.png"} <= {p.name for p in tmp_path.iterdir()}
    assert "95%" in (tmp_path / "report.md").read_text()

    assert cli_main(["evaluate", "--model", str(trained_cnn), "--data", str(FIXTURES / "dermoscopy" / "test")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 4

    with pytest.raises(SystemExit) as exit_code:  # argparse names the splits there are
        cli_main(["evaluate", "--model", str(trained_cnn), "--data", HISTO, "--split", "holdout"])
    assert (
        exit_code.value.code == 2
        and "choose from 'test', 'validation', 'train', 'left_out', 'all'" in capsys.readouterr().err
    )


def test_push_to_hub_dry_run_and_offline_failures(trained_cnn, tmp_path, capsys, monkeypatch):
    assert cli_main(["push", str(trained_cnn), "someone/cancer-cnn", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "model.safetensors" in listed and "config.json" in listed and "README.md" in listed
    assert "checkpoint" not in listed and "best.safetensors" not in listed

    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    assert cli_main(["push", str(trained_cnn), "someone/cancer-cnn"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err

    assert cli_main(["push", str(tmp_path), "someone/cancer-cnn", "--dry-run"]) == 2
    assert "not a publishable model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_count_every_image_once(tmp_path):
    """Distributed run on the CPU (gloo), with a frozen first epoch and images read from one decoded cache on
    disk: 6 validation/test images over 2 processes x batch 4 means padded batches; gather_for_metrics must drop
    the padding so every image counts exactly once.
    The two ranks are started directly with the environment torchrun would give them (a launcher process would
    only add its own start-up)."""
    args = [sys.executable, "train.py", "--data", HISTO, "--output-dir", str(tmp_path), "--epochs", "2",
            "--input-size", "32", "--batch-size", "4", "--model", "resnet18", "--freeze-epochs", "1",
            "--decoded-images", "disk", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    world = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    env = subprocess_env(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", **world)
    logs = [tmp_path / f"rank{r}.log" for r in (0, 1)]
    ranks = []
    for r, log in enumerate(logs):
        with open(log, "w") as out:  # a file, not a pipe: a full pipe would stall one rank and so both
            env_r = {**env, "RANK": str(r), "LOCAL_RANK": str(r)}
            ranks.append(subprocess.Popen(args, cwd=ROOT, env=env_r, stdout=out, stderr=subprocess.STDOUT))
    codes = [rank.wait(timeout=300) for rank in ranks]
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    # One decode into one cache, by the main process; the other read it.
    assert "decoded by an earlier run" not in logs[0].read_text()
    assert "process 1: decoded images read from the shared cache for ['train', 'validation', 'test']" in (
        logs[1].read_text()
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 6 and metrics["test"]["n"] == 6
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 6
    assert "x 2 process(es)" in (tmp_path / "README.md").read_text()
    assert {p.name for p in (tmp_path / "checkpoint").glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }


def test_weights_of_a_compiled_model_are_saved_without_the_wrapper_prefix(tmp_path):
    """train.py --compile wraps the model in torch.compile; the saved names must not carry its "_orig_mod." prefix.
    (The eager backend stands in for inductor, whose CPU compile takes minutes.)"""
    from accelerate import Accelerator

    model = create_model("cancer_cnn", input_size=64)
    compiled = torch.compile(model, backend="eager")
    assert any(k.startswith("_orig_mod") for k in compiled.state_dict())
    save_best_weights(Accelerator(cpu=True), compiled, tmp_path)
    saved = load_file(tmp_path / "best.safetensors")
    assert saved.keys() == model.state_dict().keys()


@pytest.mark.parametrize("architecture", ["cancer_cnn", "resnet34"])
def test_a_training_step_never_reads_tensor_values_back(architecture):
    """The step of train.py's loop on the meta device, where any value read (.item(), masks, `if t > 0`) raises:
    on a GPU such a read makes the CPU wait every step instead of queuing the next one."""
    with torch.device("meta"):
        model = create_model(architecture, input_size=64).train()
    optimizer = torch.optim.AdamW(model.parameters(), foreach=True)  # fused has no meta kernel
    images = torch.empty(8, 3, 64, 64, dtype=torch.uint8, device="meta")
    x, _ = training_batch(images, build_augmentation("histopathology").to("meta"), model.config)
    loss = nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long, device="meta"))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    assert all(p.grad is not None for p in model.parameters())


def test_a_checkpoint_from_before_an_option_existed_resumes_with_its_default():
    import dataclasses

    from cancer_models import ConfigError
    from cancer_models.training.config import check_resume_compatible

    cfg = TrainConfig(data=[HISTO])
    older = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "colour_constancy"}
    check_resume_compatible(older, cfg)
    with pytest.raises(ConfigError, match="colour_constancy: 'none' -> 'shades_of_gray'"):
        check_resume_compatible(older, dataclasses.replace(cfg, colour_constancy="shades_of_gray"))
    with pytest.raises(ConfigError, match="epochs: 30 -> 3"):
        check_resume_compatible(older, dataclasses.replace(cfg, epochs=3))
