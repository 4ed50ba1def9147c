"""The runtime distribution ``espnet-eexit-runtime`` (``runtime/``): what a device installs.

A fresh venv without torch installs it from this checkout (pip reaches PyPI for numpy, onnxruntime,
soundfile, sentencepiece and tokenizers) and transcribes a tiny export with ``eexit-transcribe``,
as the in-process runtime does; importing it leaves the caller's import machinery and warning
filters alone. The test log gets the venv's ``pip list``, its size and the import + load time.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import soundfile

from exported_models import export, tiny_model, waveforms

REPO = Path(__file__).resolve().parents[2]
POLICY = "max_posterior:0.3"


def clean_env() -> dict:
    """The environment of a process that must see only its own venv (no PYTHONPATH to this checkout,
    no user site-packages)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(cmd, timeout=900, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          **kwargs)
    assert proc.returncode == 0, \
        f"{cmd} rc {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


# The requirements are imported first: numpy adds warning filters of its own when imported (its
# "size changed" ignores and RankWarning), which is numpy's business, not the runtime's.
CHECK_IMPORT = textwrap.dedent("""
    import importlib, importlib.util, json, logging, os, sys, warnings
    import numpy, onnxruntime, sentencepiece, soundfile, tokenizers
    before = (list(sys.meta_path), list(sys.path_hooks), list(warnings.filters),
              list(logging.getLogger().handlers))
    names = [sys.argv[1]]
    if len(sys.argv) > 2:  # every module of the package, found without importing it
        folder = importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0]
        names += sorted(sys.argv[1] + "." + f[:-3] for f in os.listdir(folder)
                        if f.endswith(".py") and f != "__init__.py")
    for name in names:
        importlib.import_module(name)
    if len(sys.argv) > 3:  # and a model loaded and run (onnxruntime imported)
        import numpy as np
        from eexit_runtime import EarlyExitRuntime
        wave = np.random.default_rng(0).normal(0, 0.3, 8000).astype(np.float32)
        EarlyExitRuntime(sys.argv[3]).transcribe([wave], "fixed")
    after = (list(sys.meta_path), list(sys.path_hooks), list(warnings.filters),
             list(logging.getLogger().handlers))
    print(json.dumps(dict(
        modules=names, meta_path=before[0] == after[0], path_hooks=before[1] == after[1],
        warnings=before[2] == after[2], logging=before[3] == after[3],
        heavy=sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "espnet", "espnet2")))))
""")


def test_importing_the_runtime_leaves_import_hooks_and_warning_filters_alone(tmp_path):
    out = export(tiny_model("conformer", tmp_path), tmp_path / "onnx")
    state = json.loads(run([sys.executable, "-c", CHECK_IMPORT, "eexit_runtime", "all", out]))
    assert {"eexit_runtime.transcribe", "eexit_runtime.exit_policy", "eexit_runtime.cli",
            "eexit_runtime.model"} <= set(state["modules"])
    assert state == dict(modules=state["modules"], meta_path=True, path_hooks=True, warnings=True,
                         logging=True, heavy=[])
    # the check sees a package that does change them: espnet_eexit (quiet imports, a warning filter)
    state = json.loads(run([sys.executable, "-c", CHECK_IMPORT, "espnet_eexit"]))
    assert not (state["meta_path"] and state["warnings"]), state


def site_packages_sizes(python: Path) -> dict:
    """{distribution: bytes of its installed files} and the total of site-packages, in a venv."""
    code = textwrap.dedent("""
        import importlib.metadata as md, json, os, sysconfig
        site = sysconfig.get_paths()["purelib"]
        sizes = {d.metadata["Name"]: sum(os.path.getsize(d.locate_file(f)) for f in d.files or ()
                                         if os.path.isfile(d.locate_file(f)))
                 for d in md.distributions()}
        total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(site) for f in fs
                    if not os.path.islink(os.path.join(r, f)))
        print(json.dumps(dict(sizes=sizes, total=total)))
    """)
    return json.loads(run([python, "-c", code], env=clean_env()))


def test_a_fresh_venv_without_torch_installs_the_runtime_and_transcribes(tmp_path, capsys):
    out = export(tiny_model("conformer", tmp_path), tmp_path / "onnx")
    waves = waveforms()
    paths = []
    for i, w in enumerate(waves):
        paths.append(tmp_path / f"u{i}.wav")
        soundfile.write(paths[-1], w, 16000)
    from eexit_runtime import EarlyExitRuntime

    runtime = EarlyExitRuntime(out)  # one utterance at a time, as eexit-transcribe's default batch
    expected = [runtime.transcribe([w], POLICY)[0] for w in waves]
    assert any(r.text for r in expected), "the tiny model says nothing: nothing to compare"

    # a copy of runtime/ (setuptools builds in the source tree: build/, *.egg-info)
    source = shutil.copytree(REPO / "runtime", tmp_path / "runtime_src",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    start = time.perf_counter()
    run([sys.executable, "-m", "venv", venv], env=clean_env())
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", source],
        env=clean_env())
    install_s = time.perf_counter() - start
    pip_list = run([python, "-m", "pip", "list", "--disable-pip-version-check"], env=clean_env())
    names = {line.split()[0].lower().replace("_", "-") for line in pip_list.splitlines()[2:]}
    assert "espnet-eexit-runtime" in names
    assert not names & {"torch", "espnet", "espnet-eexit", "torchaudio"}, pip_list
    assert {"numpy", "onnxruntime", "soundfile", "sentencepiece", "tokenizers"} <= names
    proc = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True,
                          env=clean_env())
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr

    # the console script, run where this checkout is not importable
    lines = run([bin_dir / "eexit-transcribe", "--model_dir", out, "--policy", POLICY, *paths],
                env=clean_env(), cwd=tmp_path).splitlines()
    assert lines == [f"u{i}\t{r.exit_layer}\t{r.text}" for i, r in enumerate(expected)]
    proc = subprocess.run([bin_dir / "eexit-transcribe", "--model_dir", tmp_path, paths[0]],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "model.json: no such file" in proc.stderr

    load = ("import time; t = time.perf_counter(); from eexit_runtime import EarlyExitRuntime; "
            "i = time.perf_counter(); EarlyExitRuntime(r'%s'); e = time.perf_counter(); "
            "print(i - t, e - t)" % out)
    import_s, load_s = map(float, run([python, "-c", load], env=clean_env(), cwd=tmp_path).split())
    sizes = site_packages_sizes(python)
    bootstrap = {"pip", "setuptools"}  # what python -m venv puts there itself
    own = sum(v for k, v in sizes["sizes"].items() if k.lower() not in bootstrap)
    with capsys.disabled():
        print(f"\n--- a fresh venv with espnet-eexit-runtime from {REPO / 'runtime'} "
              f"(venv + pip install: {install_s:.1f} s) ---\n{pip_list}"
              f"site-packages {sizes['total'] / 1e6:.1f} MB; the runtime and its requirements "
              f"(without pip, setuptools) {own / 1e6:.1f} MB: "
              + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(sizes["sizes"].items(),
                                                                   key=lambda kv: -kv[1])[:8])
              + f"\nimport eexit_runtime {import_s:.3f} s; import + load of a tiny Conformer "
              f"export {load_s:.3f} s")
