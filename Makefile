# espnet-eexit: `make demo` (install + main job), `make test` (install + tests).
PYTHON_VENV := tools/venv/bin/python
PYTEST_ARGS ?=

.PHONY: all install demo test clean
all: install

install:
	@bash tools/install.sh

demo: install
	cd egs2/mini_espeak/asr1 && ./run.sh

test: install
	$(PYTHON_VENV) -m pytest $(PYTEST_ARGS) tests

clean:
	$(MAKE) -C tools clean
