"""compare_faster_whisper: our runtime's exits beside faster-whisper (the bundled tiny.en, int8) on
the same utterances, latency and WER through stage 13's scoring."""
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_eexit.bin import compare_faster_whisper
from espnet_eexit.errors import EarlyExitConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoder"))
from test_whisper import synthesise  # noqa: E402  (flite + sox, as the conversion tests use)

from exported_models import tiny_whisper_export  # noqa: E402

SENTENCES = {"u1": "THE WEATHER WAS FINE AND THEY WALKED TO THE VILLAGE",
             "u2": "SHE WAS THE YOUNGEST OF THE TWO DAUGHTERS"}


def test_table_of_our_exits_and_faster_whisper(tiny_whisper_dir, tmp_path, capsys, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for key, text in SENTENCES.items():
        synthesise(text.lower(), data / f"{key}.wav")
    (tmp_path / "model").mkdir()
    _, _, onnx = tiny_whisper_export(tmp_path / "model", tiny_whisper_dir, 0.2, 4,
                                     np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    # audio at another rate: one line before anything is decoded, as asr_inference and the runtime
    soundfile.write(data / "u8k.wav", np.zeros(8000, dtype=np.float32), 8000)
    (data / "wav.scp").write_text(f"u1 {data / 'u1.wav'}\nu8k {data / 'u8k.wav'}\n")
    (data / "text").write_text("u1 A\nu8k B\n")
    with pytest.raises(EarlyExitConfigError, match="u8k .* is 8000 Hz but the model was trained on 16000 Hz"):
        compare_faster_whisper._compare(["--model_dir", str(onnx), "--data_dir", str(data), "--threads", "1"])
    # a missing file is left out of the comparison (named), the others compared
    (data / "wav.scp").write_text("".join(f"{k} {data / k}.wav\n" for k in [*SENTENCES, "gone"]))
    (data / "text").write_text("".join(f"{k} {t}\n" for k, t in [*SENTENCES.items(), ("gone", "X")]))
    with caplog.at_level(logging.WARNING):
        compare_faster_whisper.main(["--model_dir", str(onnx), "--data_dir", str(data), "--threads", "1",
                                     "--policies", "agreement:2"])
    out = capsys.readouterr().out
    assert f"utterance gone cannot be decoded ({data / 'gone'}.wav: no such file): left out of the comparison" \
        in caplog.text
    assert f"# 2 utterances of {data} (1 left out: gone)" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    table = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}
    assert list(table) == ["ours fixed:1", "ours fixed:2", "ours fixed:3", "ours fixed:4", "ours agreement:2",
                           "faster-whisper model int8"]
    whisper = table["faster-whisper model int8"]
    assert whisper[-1] == "1.00"  # its own time over itself
    # real speech: the pretrained tiny.en recognises it; our untrained tiny model cannot
    assert float(whisper[3]) <= 30.0
    assert all(float(table[f"ours fixed:{k}"][3]) >= 90.0 for k in (1, 2, 3, 4))


def test_a_missing_model_or_data_is_one_clear_error(tmp_path):
    with pytest.raises(EarlyExitConfigError, match="no CTranslate2 model.bin"):
        compare_faster_whisper._compare(["--model_dir", str(tmp_path), "--data_dir", str(tmp_path),
                                         "--ct2_model", str(tmp_path)])


def test_faster_whisper_alone_is_the_reference_row_and_its_tsv(tmp_path, capsys):
    # stage 13's reference line: the untouched tiny.en, no export of ours
    data = tmp_path / "data"
    data.mkdir()
    synthesise("she was the youngest of the 2 daughters", data / "u2.wav")
    (data / "wav.scp").write_text(f"u2 {data / 'u2.wav'}\n")
    (data / "text").write_text("u2 SHE WAS THE YOUNGEST OF THE TWO DAUGHTERS\n")
    tsv = tmp_path / "ref" / "wer.tsv"
    compare_faster_whisper.main(["--data_dir", str(data), "--threads", "1", "--output_tsv", str(tsv)])
    out = capsys.readouterr().out
    assert "faster-whisper alone" in out
    rows = [line for line in out.splitlines() if line.startswith("| faster-whisper")]
    assert len(rows) == 1 and "| ours" not in out
    header, row = tsv.read_text().splitlines()
    assert header.split("\t") == ["system", "mean_ms", "median_ms", "rtf", "wer"]
    name, mean_ms, _, rtf, wer = row.split("\t")
    assert name == "faster-whisper model int8" and float(mean_ms) > 0 and float(rtf) > 0
    assert float(wer) <= 30.0  # "2" or "two": numbers are words for every system
    with pytest.raises(EarlyExitConfigError, match="--policies and --without_drafts need --model_dir"):
        compare_faster_whisper._compare(["--data_dir", str(data), "--policies", "agreement:2"])
