"""Render the tables of benchmarks/README.md from benchmarks/results/*.json.

python benchmarks/summarize.py
"""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(pattern: str) -> list[tuple[str, dict]]:
    # By stem, so that "x-cpu" comes before its variant "x-cpu-compile".
    return [(p.stem, json.loads(p.read_text())) for p in sorted(RESULTS.glob(pattern), key=lambda p: p.stem)]


def machine_line(report: dict) -> str:
    m = report["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}{gpu}; device `{report.get('device', 'cpu')}`"


for name, r in load("train_throughput-*.json"):
    print(f"### Training throughput ({name}; `{r['command']}`)\n")
    print(
        f"Machine: {machine_line(r)}. Batch {r['batch']}, {r.get('precision', 'fp32')}"
        f"{', ours compiled' if r.get('compiled') else ''}, "
        f"{r.get('timed_steps', 6)} timed steps; the reference loads with {r.get('reference_workers', 2)} workers."
        f"{' ' + r['note'] + '.' if r.get('note') else ''}\n"
    )
    print(
        "| model @ px | ours (img/s) | reference (img/s) | speed-up | model step alone (img/s) "
        "| our one-time decode (s) |"
    )
    print("|---|---|---|---|---|---|")
    for key, v in r["results"].items():
        ceiling = v["ours"].get("model_step_only_images_per_s", "not measured")
        print(
            f"| {key} | {v['ours']['images_per_s']} | {v['reference']['images_per_s']} | {v['speedup']}x | {ceiling} "
            f"| {v['ours']['one_time_decode_s']} |"
        )
    print()

for name, r in load("inference-*.json"):
    print(f"### Inference ({name}; `{r['command']}`)\n")
    print(f"Machine: {machine_line(r)}.{' ' + r['note'] + '.' if r.get('note') else ''}\n")
    print(
        "| model @ px | variant | batch 1 p50 / p95 (ms) | batch 64 (img/s) | same labels as eager (of 64) | max prob. diff |"
    )
    print("|---|---|---|---|---|---|")
    for key, v in r["results"].items():
        for variant, x in v["variants"].items():
            lat = x["batch1_latency"]
            star = " **fastest**" if variant == v["fastest"] else ""
            print(
                f"| {key} | {variant}{star} | {lat['p50_ms']} / {lat['p95_ms']} | {x['batch64_images_per_s']} | {x['same_labels_vs_eager']} | {x['max_abs_prob_diff_vs_eager']} |"
            )
    print()

for name, r in load("explain_and_app-*.json"):
    print(f"### Grad-CAM and the app ({name}; `{r['command']}`)\n")
    print(f"Machine: {machine_line(r)}. Model `{r['model']}`, one 160 px tile.\n")
    print("| CAM method | p50 (ms) | p95 (ms) |")
    print("|---|---|---|")
    for method, x in r["cam_latency"].items():
        print(f"| {method} | {x['p50_ms']} | {x['p95_ms']} |")
    a = r["app"]
    print(
        f"\nApp: page served {a['page_ready_s']} s after `python app.py` started; first answer (model loaded on "
        f"first use) at {a['cold_start_to_first_answer_s']} s; then /predict (predict + Grad-CAM overlay, "
        f"through gradio_client) p50 {a['request']['p50_ms']} ms, p95 {a['request']['p95_ms']} ms.\n"
    )
