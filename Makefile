# espnet-eexit: `make demo` (install + main job), `make test` (install + tests).
PYTHON_VENV := tools/venv/bin/python
PYTEST_ARGS ?=
# The main job on a 2-core CPU (target 60 min from a fresh clone): the synth_en corpus (~5 h), early-exit Whisper
# tiny.en (an exit after each of its 4 layers, each with a copy of its decoder) fine-tuned for 1 epoch, every exit
# of the test set decoded and scored. The from-scratch Conformer: make demo DEMO_ARGS="--backbone conformer".
DEMO_ARGS ?= --test_sets "test test_engine real_test"

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
