# espnet-eexit: `make demo` (install + main job), `make test` (install + tests).
PYTHON_VENV := tools/venv/bin/python
PYTEST_ARGS ?=
# The main job on a 2-core CPU (target 60 min from a fresh clone): the synth_en corpus (~5 h: Kokoro-82M,
# piper, festival, espeak-ng voices; flite held out as test_engine; real_test = recorded telephone prompts),
# early-exit Whisper tiny.en (an exit after each of its 4 layers, each with a copy of its decoder) whose
# full-depth path stays the pretrained model while the lower exits train for 1 epoch; every exit of the
# three test sets decoded and scored beside the untouched tiny.en. The from-scratch Conformer:
# make demo DEMO_ARGS="--backbone conformer".
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
