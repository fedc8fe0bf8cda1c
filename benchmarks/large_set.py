"""Training on a set larger than memory: decode time, cache hits, peak memory, throughput. Prints JSON.

    python benchmarks/large_set.py make   --out /tmp/synthetic --train 200000      # real JPEG files, 96 px
    python benchmarks/large_set.py decode --data /tmp/synthetic --cache /tmp/c --workers 1 2  # misses, hits
    python benchmarks/large_set.py train  --data /tmp/synthetic -- --input-size 64 --epochs 1 ...
    python benchmarks/large_set.py train  --processes 2 --data /tmp/synthetic -- --max-steps 20 ...

``make`` writes an imagefolder set (train / validation / test, metadata.csv with label and group) of JPEG files
cut from the real histopathology tiles (each file a random crop, orientation and colour scaling of one tile,
resized to 96 px), so decoding costs what real JPEGs cost. ``train`` runs train.py (``accelerate launch`` with
``--processes N``) and samples the memory of its training processes twice a second: resident memory (RSS),
anonymous memory (the heap; proportional, so pages a forked decoding worker shares with its parent count once),
file-backed pages (the memory-mapped cache, which the kernel can drop and which processes share), the
proportional set size (PSS) summed over processes, and the anonymous memory of the largest process alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import DATA, command, machine

SIZE = 96


def _write_images(job: tuple[list[tuple[str, int, str]], str, int]) -> list[tuple[str, str, str]]:
    sources, out, seed = job
    rng = random.Random(seed)
    rows = []
    for path, index, label in sources:
        tile = Image.open(path).convert("RGB")
        w, h = tile.size
        crop = rng.randint(int(0.6 * min(w, h)), min(w, h))
        left, top = rng.randint(0, w - crop), rng.randint(0, h - crop)
        image = tile.crop((left, top, left + crop, top + crop)).resize((SIZE, SIZE), Image.BILINEAR)
        image = image.rotate(90 * rng.randint(0, 3))
        scale = rng.uniform(0.85, 1.15)
        image = image.point([min(255, int(v * scale)) for v in range(256)] * 3)
        name = f"{label}/{index:07d}.jpg"
        image.save(Path(out) / name, quality=90)
        rows.append((name, label, f"tile{Path(path).stem}"))
    return rows


def make(out: Path, train: int, held_out: int, workers: int) -> dict:
    """The synthetic set: each split's files come from its own source tiles (groups never cross splits)."""
    tiles = sorted((DATA / "histopathology" / "train").glob("*/*.jpg"))
    if not tiles:
        raise SystemExit(f"no histopathology tiles under {DATA}")
    random.Random(0).shuffle(tiles)
    cut = len(tiles) // 10
    pools = {"train": tiles[2 * cut :], "validation": tiles[:cut], "test": tiles[cut : 2 * cut]}
    sizes = {"train": train, "validation": held_out, "test": held_out}
    started = time.perf_counter()
    for split, count in sizes.items():
        folder = out / split
        for label in ("benign", "malignant"):
            (folder / label).mkdir(parents=True, exist_ok=True)
        sources = [(str(p), i, p.parent.name) for i, p in zip(range(count), _cycle(pools[split]), strict=False)]
        chunks = [(sources[i : i + 2000], str(folder), i) for i in range(0, len(sources), 2000)]
        with Pool(workers) as pool:
            rows = [row for part in pool.imap(_write_images, chunks) for row in part]
        with open(folder / "metadata.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file_name", "label", "group"])
            writer.writerows(rows)
    files = list(out.rglob("*.jpg"))
    return {
        "images": sizes,
        "bytes_on_disk": sum(p.stat().st_size for p in files),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _cycle(items: list) -> object:
    while True:
        yield from items


def decode(data: Path, workers: list[int], size: int, cache: Path) -> dict:
    """The training split loaded once into ``cache`` (datasets builds its Arrow files of the source), then decoded
    with each number of workers: a miss (the decoded files deleted first), then a hit."""
    from cancer_models.data.decoding import decode_split
    from cancer_models.data.image_sets import load_splits
    from cancer_models.data.spec import DataSpec

    started = time.perf_counter()
    split = load_splits(DataSpec([str(data)], cache_dir=str(cache)))["train"]
    results = {"load_seconds": round(time.perf_counter() - started, 1)}
    folders = {os.path.dirname(f["filename"]) for f in split.cache_files}
    for count in workers:
        for old in (Path(d) / name for d in folders for name in os.listdir(d) if name.startswith("cache-")):
            old.unlink()
        for run in ("miss", "hit"):
            started = time.perf_counter()
            decoded = decode_split(split, size, in_memory=False, num_proc=count)
            results[f"{count} worker(s), cache {run}"] = {
                "images": len(decoded),
                "decode_seconds": round(time.perf_counter() - started, 1),
                "cache_hit": decoded.cache_hit,
            }
            print(json.dumps(results), file=sys.stderr)
    return results


class MemorySampler(threading.Thread):
    """Peak memory of the children of a process (``accelerate launch``'s training processes), sampled every
    half second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.done = psutil.Process(pid), threading.Event()
        self.peak = {
            "rss_gb": 0.0, "anonymous_gb": 0.0, "file_backed_gb": 0.0, "pss_gb": 0.0,
            "largest_process_anonymous_gb": 0.0, "processes": 0,
        }  # fmt: skip

    def run(self) -> None:
        while not self.done.is_set():
            totals = {"rss_gb": 0.0, "anonymous_gb": 0.0, "file_backed_gb": 0.0, "pss_gb": 0.0}
            largest = 0.0
            processes = self.root.children(recursive=True)  # the training processes, not the launcher
            python = 0
            for p in processes:
                try:
                    status = _kib_fields(f"/proc/{p.pid}/status", ("VmRSS", "RssAnon", "RssFile", "RssShmem"))
                    rollup = _kib_fields(f"/proc/{p.pid}/smaps_rollup", ("Pss", "Pss_Anon"))
                except OSError:
                    continue
                python += "python" in p.name()
                totals["rss_gb"] += status["VmRSS"] / 2**20
                # Pss_Anon, not RssAnon: decoding workers are forked, and each one's RssAnon counts again the
                # parent's pages it shares copy-on-write (4 processes summed to 3.4 GB where 1.6 GB was in use).
                totals["anonymous_gb"] += rollup["Pss_Anon"] / 2**20
                largest = max(largest, status["RssAnon"] / 2**20)
                totals["file_backed_gb"] += (status["RssFile"] + status["RssShmem"]) / 2**20
                totals["pss_gb"] += rollup["Pss"] / 2**20
            for key, value in totals.items():
                self.peak[key] = max(self.peak[key], round(value, 3))
            self.peak["largest_process_anonymous_gb"] = max(
                self.peak["largest_process_anonymous_gb"], round(largest, 3)
            )
            self.peak["processes"] = max(self.peak["processes"], python)
            self.done.wait(0.5)


def _kib_fields(path: str, names: tuple[str, ...]) -> dict[str, float]:
    values = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in names:
                values[key] = float(rest.split()[0])
    return {name: values.get(name, 0.0) for name in names}


FIRST_STEP = re.compile(r"epoch 1/\d+:\s+\d+%\|[^|]*\|\s*1/")


def train(data: Path, processes: int, train_args: list[str]) -> dict:
    """train.py on ``data``; wall time, time to the first optimizer step, images/s of training, peak memory."""
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    script = ["train.py", "--data", str(data), *train_args]
    if processes == 1:
        args = ["accelerate", "launch", "--num_processes", "1", "--num_cpu_threads_per_process", threads]
        args += ["--mixed_precision", "no", *script]
    else:
        # The ranks on the CPU (gloo), started with the environment torchrun would give them, under one shell.
        world = f"WORLD_SIZE={processes} LOCAL_WORLD_SIZE={processes} MASTER_ADDR=127.0.0.1 MASTER_PORT=29533"
        env = f"{world} ACCELERATE_USE_CPU=true OMP_NUM_THREADS={threads}"
        quoted = " ".join(shlex.quote(a) for a in [sys.executable, *script])
        ranks = " ".join(f"RANK={r} LOCAL_RANK={r} {env} {quoted} &" for r in range(processes))
        args = ["bash", "-c", f"{ranks} for j in $(jobs -p); do wait $j || exit 1; done"]
    log = Path(tempfile.mkstemp(prefix="large-set-", suffix=".log")[1])
    started = time.perf_counter()
    first_step = None
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        while proc.poll() is None:
            if first_step is None and FIRST_STEP.search(log.read_text(errors="replace")):
                first_step = time.perf_counter() - started
            time.sleep(0.5)
        sampler.done.set()
        sampler.join()
    text = log.read_text(errors="replace")
    if proc.returncode:
        raise SystemExit(f"train.py failed ({proc.returncode}):\n{text[-3000:]}")
    # tqdm's last reading of the first epoch's bar: steps done, and its rate (smoothed over recent steps).
    bars = re.findall(r"epoch 1/\d+:\s+\d+%\|[^|]*\|\s*(\d+)/\d+ \[[^,\]]*,\s*([\d.]+)(it/s|s/it)", text)
    steps, rate, unit = bars[-1] if bars else (0, "nan", "it/s")
    steps_per_second = float(rate) if unit == "it/s" else 1 / float(rate)
    return {
        "train_args": train_args,
        "processes": processes,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "seconds_to_first_step": None if first_step is None else round(first_step, 1),
        "peak_memory": sampler.peak,
        "data_lines": [line.strip() for line in text.replace("\r", "\n").splitlines() if " images (" in line],
        "first_epoch_steps": int(steps),
        "steps_per_second": round(steps_per_second, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=int, default=200_000)
    p.add_argument("--held-out", type=int, default=2_000, help="images in validation and in test")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p = sub.add_parser("decode")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--cache", type=Path, required=True, help="datasets cache folder (kept: later runs reuse it)")
    p = sub.add_parser("train")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "make":
        result = make(args.out, args.train, args.held_out, args.workers)
    elif args.command == "decode":
        result = decode(args.data, args.workers, args.size, args.cache)
    else:
        result = train(args.data, args.processes, [a for a in args.train_args if a != "--"])
    print(json.dumps({"command": command(), "machine": machine(), args.command: result}, indent=1))


if __name__ == "__main__":
    main()
