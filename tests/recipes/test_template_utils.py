"""The shared recipe tools in egs2/TEMPLATE/asr1: option parsing, job runner, scp splitting,
data-dir validation, audio formatting and speed perturbation — bad input gets a clear message."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

TEMPLATE = Path(__file__).resolve().parents[2] / "egs2" / "TEMPLATE" / "asr1"
UTILS = TEMPLATE / "utils"


def sh(*cmd, cwd=None, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env)


def make_data_dir(root: Path, n: int = 3, seconds: float = 0.5) -> Path:
    data = root / "data"
    (root / "wav").mkdir(parents=True)
    data.mkdir()
    rows = []
    for i in range(n):
        utt = f"spk{i % 2}-utt{i}"
        wav = root / "wav" / f"{utt}.wav"
        t = np.arange(int(22050 * seconds)) / 22050
        soundfile.write(wav, 0.1 * np.sin(2 * np.pi * 220 * (i + 1) * t), 22050)
        rows.append((utt, f"spk{i % 2}", wav, f"WORD {i}"))
    rows.sort()
    (data / "wav.scp").write_text("".join(f"{u} {w}\n" for u, _, w, _ in rows))
    (data / "text").write_text("".join(f"{u} {t}\n" for u, _, _, t in rows))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _, _ in rows))
    return data


def test_parse_options_sets_known_variables_and_rejects_unknown(tmp_path):
    script = tmp_path / "s.sh"
    script.write_text(f'stage=1\nasr_args=\nhelp_message="usage: s.sh"\n. {UTILS}/parse_options.sh\n'
                      'echo "$stage|$asr_args|$*"\n')
    out = sh("bash", script, "--stage", "10", "--asr-args", "--max_epoch 1", "rest")
    assert out.returncode == 0 and out.stdout.strip() == "10|--max_epoch 1|rest"
    assert sh("bash", script, "--stage=3").stdout.strip() == "3||"
    bad = sh("bash", script, "--stgae", "3")
    assert bad.returncode != 0 and "unknown option --stgae" in bad.stderr
    assert "needs a value" in sh("bash", script, "--stage").stderr
    assert sh("bash", script, "--help").stdout.strip() == "usage: s.sh"


def test_run_local_runs_parallel_jobs_and_reports_failures(tmp_path):
    ok = sh(UTILS / "run_local.sh", "JOB=1:3", tmp_path / "log.JOB", "echo", "job JOB")
    assert ok.returncode == 0
    for n in (1, 2, 3):
        log = (tmp_path / f"log.{n}").read_text()
        assert f"job {n}\n" in log and "Ended (code 0)" in log
    bad = sh(UTILS / "run_local.sh", "--max_jobs_run", "1", "JOB=1:3", tmp_path / "bad.JOB", "test JOB -ne 2")
    assert bad.returncode == 1 and "1 / 3 failed, log is in" in bad.stderr and "bad.2" in bad.stderr
    # ESPnet's launcher calls the runner as: <cmd> --gpu N <log> <command...>
    single = sh(UTILS / "run_local.sh", "--gpu", "0", "--name", "x", tmp_path / "one.log", "true")
    assert single.returncode == 0 and "Ended (code 0)" in (tmp_path / "one.log").read_text()


def test_run_local_shares_threads_between_parallel_jobs(tmp_path):
    """Jobs that run at once split the allowed threads (OpenMP oversubscription was 25x slower)."""
    def threads(*args, allowed="4"):
        out = sh(UTILS / "run_local.sh", *args, "JOB=1:2", tmp_path / "t.JOB",
                 "bash", "-c", "echo threads=$OMP_NUM_THREADS/$MKL_NUM_THREADS",
                 env={**os.environ, "OMP_NUM_THREADS": allowed})
        assert out.returncode == 0, out.stderr
        return {line[len("threads="):] for n in (1, 2)
                for line in (tmp_path / f"t.{n}").read_text().splitlines() if line.startswith("threads=")}

    assert threads() == {"2/2"}                          # 2 jobs at once share 4 threads
    assert threads("--max_jobs_run", "1") == {"4/4"}     # one at a time: each gets all 4
    assert threads(allowed="1") == {"1/1"}               # never below one thread
    assert threads("--num_threads", "3") == {"3/3"}      # the caller decides
    bad = sh(UTILS / "run_local.sh", "--num_threads", "0", tmp_path / "x.log", "true")
    assert bad.returncode == 2 and "--num_threads 0: must be a positive integer" in bad.stderr


def test_split_scp_keeps_order_and_balances(tmp_path):
    scp = tmp_path / "in.scp"
    scp.write_text("".join(f"u{i:02d} x\n" for i in range(10)))
    parts = [tmp_path / f"p.{n}" for n in (1, 2, 3)]
    assert sh(UTILS / "split_scp.sh", scp, *parts).returncode == 0
    lines = [p.read_text().splitlines() for p in parts]
    assert [len(x) for x in lines] == [3, 3, 4] and sum(lines, []) == scp.read_text().splitlines()
    too_many = sh(UTILS / "split_scp.sh", scp, *[tmp_path / f"q.{n}" for n in range(11)])
    assert too_many.returncode != 0 and "fewer than the 11 parts" in too_many.stderr


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: (d / "text").unlink(), "text is missing or empty"),
        (lambda d: (d / "text").write_text("\n".join(reversed((d / "text").read_text().splitlines())) + "\n"),
         "text is not sorted"),
        (lambda d: (d / "text").write_text("".join((d / "text").read_text().splitlines(True)[:-1])),
         "do not have the same utterances"),
        (lambda d: (d / "text").write_text((d / "text").read_text().replace("WORD 1", "")),
         "empty transcript"),
        (lambda d: next((d.parent / "wav").iterdir()).unlink(), "is missing or empty"),
    ],
)
def test_validate_data_dir_names_the_problem(tmp_path, breakage, message):
    data = make_data_dir(tmp_path)
    assert sh(UTILS / "validate_data_dir.sh", "--check_audio", data).returncode == 0
    breakage(data)
    out = sh(UTILS / "validate_data_dir.sh", "--check_audio", data)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_validate_data_dir_rejects_a_missing_dir(tmp_path):
    out = sh(UTILS / "validate_data_dir.sh", tmp_path / "nope")
    assert out.returncode != 0 and "no such data directory" in out.stderr


def test_format_wav_scp_resamples_and_fails_clearly_on_bad_audio(tmp_path):
    data = make_data_dir(tmp_path)
    out = tmp_path / "dump"
    run = sh(sys.executable, TEMPLATE / "pyscripts" / "format_wav_scp.py", "--fs", "16000",
             data / "wav.scp", out)
    assert run.returncode == 0, run.stderr
    rows = dict(line.split() for line in (out / "utt2num_samples").read_text().splitlines())
    assert set(rows.values()) == {"8000"}  # 0.5 s at 16 kHz
    first = (out / "wav.scp").read_text().split()[1]
    assert soundfile.info(first).samplerate == 16000

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    (data / "wav.scp").write_text(f"bad-utt {corrupt}\n")
    before = (out / "wav.scp").read_text()
    run = sh(sys.executable, TEMPLATE / "pyscripts" / "format_wav_scp.py", data / "wav.scp", out)
    assert run.returncode != 0 and "utterance 'bad-utt'" in run.stderr and "cannot decode" in run.stderr
    assert "Traceback" not in run.stderr
    assert (out / "wav.scp").read_text() == before  # nothing already written is lost

    (data / "wav.scp").write_text(f"gone {tmp_path / 'gone.wav'}\n")
    run = sh(sys.executable, TEMPLATE / "pyscripts" / "format_wav_scp.py", data / "wav.scp", out)
    assert run.returncode != 0 and "utterance 'gone'" in run.stderr and "file not found" in run.stderr


def test_speed_perturbation_makes_sox_pipes_that_format_reads(tmp_path):
    data = make_data_dir(tmp_path, n=2, seconds=1.0)
    sp = tmp_path / "data_sp"
    run = sh(sys.executable, TEMPLATE / "pyscripts" / "perturb_data_dir_speed.py",
             "--factors", "0.9 1.0 1.1", data, sp)
    assert run.returncode == 0, run.stderr
    keys = [line.split()[0] for line in (sp / "wav.scp").read_text().splitlines()]
    assert len(keys) == 6 and keys == sorted(keys) and "sp0.9-spk0-utt0" in keys
    assert sh(UTILS / "validate_data_dir.sh", sp).returncode == 0
    out = tmp_path / "dump"
    assert sh(sys.executable, TEMPLATE / "pyscripts" / "format_wav_scp.py", sp / "wav.scp", out).returncode == 0
    n = dict(line.split() for line in (out / "utt2num_samples").read_text().splitlines())
    assert int(n["spk0-utt0"]) == 16000
    assert abs(int(n["sp0.9-spk0-utt0"]) - 16000 / 0.9) < 50  # slower = longer
    assert abs(int(n["sp1.1-spk0-utt0"]) - 16000 / 1.1) < 50


def test_setup_sh_makes_a_recipe_outside_the_repository_whose_path_sh_finds_the_venv(tmp_path):
    """`cp -r` of a recipe breaks its relative links; setup.sh links absolutely outside egs2/,
    and path.sh (a link) resolves the repository from its own target, not from the recipe."""
    out = sh(TEMPLATE / "setup.sh", tmp_path / "my_corpus" / "asr1")
    assert out.returncode == 0, out.stderr
    recipe = tmp_path / "my_corpus" / "asr1"
    for name in ("asr.sh", "path.sh", "scripts", "pyscripts", "utils"):
        assert (recipe / name).is_symlink() and (recipe / name).resolve() == TEMPLATE / name
    assert (recipe / "cmd.sh").is_file() and (recipe / "conf").is_dir() and (recipe / "local").is_dir()
    env = sh("bash", "-c", ". ./path.sh && echo ${MAIN_ROOT} && command -v python", cwd=recipe)
    assert env.returncode == 0, env.stderr
    root, python = env.stdout.split()
    assert Path(root) == TEMPLATE.parents[2] and Path(python).parent == TEMPLATE.parents[2] / "tools" / "venv" / "bin"
    again = sh(TEMPLATE / "setup.sh", recipe)
    assert again.returncode == 1 and "already exists" in again.stderr
