# make demo: set everything up, run the main job.   make test: set up, run the tests.
# Both are idempotent: apt packages are installed only when missing, the venv is
# rebuilt only when pyproject.toml changes.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP = $(VENV)/.installed-$(shell (cat pyproject.toml; echo $(EXTRAS)) | sha256sum | cut -c1-12)
# chromium + chromium-driver: the kiosk page is tested in a real headless browser.
APT_PACKAGES := portaudio19-dev espeak-ng libespeak-ng1 ffmpeg alsa-utils libasound2-plugins \
	chromium chromium-driver \
	pocketsphinx-testdata flite festival festvox-kallpc16k festvox-us-slt-hts klettres-data \
	festvox-kdlpc16k festvox-hi-nsk
DEMO_OUT ?= demo-out
# `pip install avedge` is the runtime only; demo and tests need the export and training
# stacks (extras, see pyproject.toml). The Arm NPU toolchain (~240 MB) is installed
# unless NO_ETHOS_U=1.
comma := ,
EXTRAS := export,train,sweep,lipread,lipsync,audio,dev,corpus,bench$(if $(NO_ETHOS_U),,$(comma)ethos-u)

.PHONY: setup demo test lint clean system-packages

setup: system-packages $(STAMP)

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	# torch first and pinned, so nothing below can pull the multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(BIN)/avedge demo --out $(DEMO_OUT)

# Test files are spread over TEST_WORKERS processes (a file stays on one worker, so its
# module fixtures are built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
