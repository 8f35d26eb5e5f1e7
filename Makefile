# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STATE ?= state
HOST ?= 127.0.0.1
PORT ?= 8501
CPU_TORCH := torch==2.13.0 torchvision==0.28.0
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc

.PHONY: setup run runner dashboard test lint bench chaos clean

setup: $(STAMP) system-deps

# Re-installs only when a requirements file or pyproject.toml changes, so a second `make setup` is quick.
# Last, this project itself, editable: the `ocrjobs` command ($(VENV)/bin/ocrjobs), from any folder.
$(STAMP): requirements.txt requirements-dev.txt requirements-ray.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		echo "no GPU found: installing the CPU build of torch and its torchvision ($(CPU_TORCH))"; \
		$(PY) -m pip install -q $(CPU_TORCH); \
	fi
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt -r requirements-ray.txt
	$(PY) -c "import setuptools" 2>/dev/null || $(PY) -m pip install -q "setuptools>=64"
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

# Debian packages: a CJK font to render Chinese test pages, chromium for the browser test
# (driven by Playwright with executable_path; Playwright never downloads a browser here), and
# Tesseract with its English and Chinese data (the tesserocr wheel reads that tessdata), and
# redis-server for bench/store_scale.py's RQ comparison (started there on a free port, never as a service).
# Only what is missing is installed, so a second call is instant.
TESS_LANGS := eng chi_sim chi_tra
.PHONY: system-deps
system-deps:
	@missing=""; \
	[ -f $(CJK_FONT) ] || missing="$$missing fonts-wqy-zenhei"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v tesseract >/dev/null 2>&1 || missing="$$missing tesseract-ocr"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	for lang in $(TESS_LANGS); do \
		ls /usr/share/tesseract-ocr/*/tessdata/$$lang.traineddata >/dev/null 2>&1 \
			|| missing="$$missing tesseract-ocr-$${lang//_/-}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
		else \
			echo "warning: missing Debian packages:$$missing (tests that need them are skipped)"; \
		fi; \
	fi

# The job folder for the whole recipe, absolute: the runner, the dashboard and whatever they start read it.
run runner: export OCRJOBS_STATE := $(abspath $(STATE))

run: setup
	@mkdir -p $(STATE)
	@echo "runner + dashboard on http://$(HOST):$(PORT) (job folder: $(STATE)); Ctrl-C stops both"
	@$(PY) runner.py --state $(STATE) & runner=$$!; \
	trap 'kill $$runner 2>/dev/null; wait $$runner' EXIT INT TERM; \
	$(PY) -m jobs.dashboard.gate --server.address $(HOST) --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

runner: setup
	$(PY) runner.py --state $(STATE)

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest -q

# Fault campaigns in their long forms (kill storm 50 kills / 500 items, 8 x 2000 claimers, 5000 torn
# writes, ...), ~7 min on 2 cores; `make test` runs their short forms. Figures: docs/reliability.md.
chaos: setup
	OCRJOBS_CHAOS=long OCRJOBS_CHAOS_REPORT=chaos-report.json $(PY) -m pytest -q -s tests/chaos

# Throughput (vs a plain rapidocr loop, 2 alternating rounds) and quality (CER per engine) on generated
# inputs, ~6 min on 2 cores; writes bench/RESULTS.md with the machine it ran on. Run it on an idle machine.
bench: setup
	$(PY) -m bench.report --repeat 2 -o bench/RESULTS.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
