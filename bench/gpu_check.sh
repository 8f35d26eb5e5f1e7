#!/usr/bin/env bash
# GPU smoke check: every tiny model family (tests/hf_tiny.py, tests/hf_tiny_vlm.py) through the real
# `submit` + `runner.py --once` on CUDA, as a team would run it. Prints a markdown table:
#   family | device | items done | items/s
# Random tiny models read nothing useful: this checks that each family loads and runs on the GPU, that
# the runner gives the job one worker per GPU (its plan is printed), and how fast the plumbing is.
#
#   bench/gpu_check.sh            # on a machine with CUDA; exits 0 with a message when there is none
#   bench/gpu_check.sh --cpu      # the same on CPU, to check the script itself on a machine without one
#   ITEMS=8 bench/gpu_check.sh    # items per family (default 4)
#   FAMILIES=ved,donut bench/gpu_check.sh   # only these builders (build_ved, build_donut)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=cuda
[ "${1:-}" = "--cpu" ] && DEVICE=cpu

if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check. Run it on the GPU box."
    exit 0
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DEVICE ITEMS="${ITEMS:-4}"
exec "$PY" - <<'EOF'
import importlib, json, os, subprocess, sys, tempfile, time
import jobs  # first: it lets torchvision (and so transformers) import beside a CPU torch (jobs/torchvision_ops.py)
from pathlib import Path

from PIL import Image, ImageDraw

device, items = os.environ["DEVICE"], int(os.environ["ITEMS"])
work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
builders = []
for module in ("tests.hf_tiny", "tests.hf_tiny_vlm", "tests.hf_tiny_ppocr"):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        print(f"({module} not available: {e})", file=sys.stderr)
        continue
    if module == "tests.hf_tiny_ppocr":  # detection + recognition: two folders, one "ppocr" row
        builders.append(("ppocr", lambda dest, m=mod: {"det": m.build_det(dest / "det"), "rec": m.build_rec(dest / "rec")}))
        continue
    builders += [(name[len("build_"):], getattr(mod, name)) for name in sorted(vars(mod)) if name.startswith("build_")]

only = {f for f in os.environ.get("FAMILIES", "").split(",") if f}
skip = {"llava"}  # tests/hf_tiny.py's generic image-text model for the engine's own tests, not an OCR family
builders = [(f, b) for f, b in builders if (f in only if only else f not in skip)]
pages = []
for i in range(items):
    im = Image.new("RGB", (320, 96), "white")
    ImageDraw.Draw(im).text((10, 30), f"invoice {i}: total 12.50", fill="black")
    im.save(work / f"p{i}.png")
    pages.append(str(work / f"p{i}.png"))


def run(*cmd, timeout=1800):
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=timeout)


rows, plans = [], set()
for family, build in builders:
    state = work / family / "state"
    state.mkdir(parents=True)
    try:
        model = build(work / family / "model")
    except Exception as e:  # a family whose processor needs what this machine lacks (torchvision...)
        rows.append((family, "-", "build failed", f"{type(e).__name__}: {str(e)[:80]}"))
        continue
    if family == "ppocr":
        engine = ["--engine", "ppocr", "--engine-option", f"det_model={model['det']}",
                  "--engine-option", f"rec_model={model['rec']}"]
    else:
        engine = ["--engine", "transformers", "--model", str(model),
                  # tiny models have few positions; page families would otherwise generate thousands of tokens
                  "--engine-option", f"max_new_tokens={os.environ.get('NEW_TOKENS', '16')}"]
        if family == "deepseek_ocr_remote":  # DeepSeek-OCR v1 ships its own code: only run when trusted
            engine.append("--trust-remote-code")
    sub = run("-m", "jobs", "--state", str(state), "submit", *pages, *engine, "--json")
    if sub.returncode:
        rows.append((family, "-", "submit refused", (sub.stderr or sub.stdout).strip().splitlines()[-1][:100]))
        continue
    job = json.loads(sub.stdout)["id"]
    t0 = time.monotonic()
    ran = run("runner.py", "--state", str(state), "--once", "--device", device)
    elapsed = time.monotonic() - t0
    plans.update(line.split("INFO ", 1)[-1] for line in (ran.stdout + ran.stderr).splitlines()
                 if "GPU engines (" in line or f"job {job}: transformers:" in line)
    out = state / "out.json"
    run("-m", "jobs", "--state", str(state), "export", job, "-o", str(out))
    results = json.loads(out.read_text()) if out.exists() else []
    done = [r for r in results if r.get("status") == "done"]
    devices = ",".join(sorted({str(r.get("device")) for r in done})) or "-"
    error = next((r.get("error") for r in results if r.get("error")), None)
    note = f"{len(done) / elapsed:.2f}" if done else f"0 ({error or 'runner exit ' + str(ran.returncode)})"
    rows.append((family, devices, f"{len(done)}/{items}", note))

print(f"\nRan on {device}; items/s counts the whole `runner.py --once` (start, model load, {items} items).\n")
for plan in sorted(plans):
    print(f"Runner plan: {plan}")
print("\n| family | device | items done | items/s |\n|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
print(f"\n(work folder: {work})")
EOF
