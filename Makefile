# espnet-eexit: `make demo` (install + main job), `make test` (install + tests).
PYTHON_VENV := tools/venv/bin/python
PYTEST_ARGS ?=
# The main job on a 2-core CPU (47 min measured from a fresh clone, target 60): the synth_en corpus (~5 h of speech), 4 epochs of
# the 12-layer early-exit Conformer-CTC, every exit decoded (greedy CTC) and scored.
DEMO_ARGS ?= --asr_args "--max_epoch 4 --keep_nbest_models 2"

.PHONY: all install demo demo-mini test clean
all: install

install:
	@bash tools/install.sh

demo: install
	cd egs2/synth_en/asr1 && ./run.sh $(DEMO_ARGS)

demo-mini: install   # a 10-minute toy: espeak-ng command words, 6 layers
	cd egs2/mini_espeak/asr1 && ./run.sh

test: install
	$(PYTHON_VENV) -m pytest $(PYTEST_ARGS) tests

clean:
	$(MAKE) -C tools clean
