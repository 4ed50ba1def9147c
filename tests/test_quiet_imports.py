"""Our entry points print their own output, not pages of third-party import chatter."""
import subprocess
import sys


def test_entry_point_import_prints_no_nltk_download_errors_or_amp_deprecations():
    # offline (as here and in CI) g2p_en's import-time nltk downloads fail and used to print
    # ten '[nltk_data] Error loading ...' lines before anything of ours
    out = subprocess.run(
        [sys.executable, "-c", "import sys, espnet_eexit.bin.asr_inference, espnet2.tasks.asr; "
         "print('g2p_en' in sys.modules)"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"  # still imported: ESPnet's phoneme tokenizers need it
    assert "[nltk_data]" not in out.stderr + out.stdout
    assert "FutureWarning" not in out.stderr
