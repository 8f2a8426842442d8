# vidviz: two commands do everything on a fresh machine.
#   make run    install (project-local .venv), generate the default dataset if missing, start the app
#   make test   install (with test tools and Debian's chromium), then run the whole test suite
VENV    ?= .venv
PY      := $(VENV)/bin/python
DATA    ?= data/ssv2-synth
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Tests and tools leave nothing in the checkout: no __pycache__, no tool caches (see README, Development).
export PYTHONDONTWRITEBYTECODE = 1
RUFF    := $(VENV)/bin/ruff check --no-cache vidviz pages tests benchmarks app.py ui.py serve.py

.PHONY: run test test-fast install install-dev data chromium lint clean bench-deps store

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . || $(PY) -m pip install -q --no-deps -e .
	rm -rf vidviz.egg-info  # a by-product of the editable install; the venv holds what it needs
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# (again when an older version of the generator made it: the shipped checkpoint was trained on this version's data)
data: $(VENV)/.installed
	@$(PY) -c "import sys; from vidviz.data.synth import is_current; sys.exit(not is_current('$(DATA)'))" \
		|| $(VENV)/bin/vidviz synth --out $(DATA) --clips 1500 --seed 0

run: data
	$(VENV)/bin/streamlit run serve.py

chromium:
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

test: $(VENV)/.installed-dev chromium data
	$(RUFF)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(VENV)/.installed-dev data
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not browser"

# The default store of the test split: predictions and maps (the gallery), then the saliency-quality scores of
# Grad-CAM and Grad-CAM++ next to the baselines on every clip, the randomisation check on 20 (the quality page).
store: data
	$(VENV)/bin/vidviz precompute --split test
	$(VENV)/bin/vidviz quality --split test --methods gradcam gradcam++

# The peers `vidviz bench methods` compares with (not needed to run or test vidviz): pytorch-grad-cam without
# its dependency on the non-headless OpenCV, which would shadow opencv-python-headless.
bench-deps: $(VENV)/.installed-dev
	$(PY) -m pip install -q scipy scikit-learn ttach==0.0.3
	$(PY) -m pip install -q --no-deps grad-cam==1.5.7

lint: $(VENV)/.installed-dev
	$(RUFF)

clean:
	rm -rf $(VENV) stores vidviz.egg-info
