"""exit_info: per-job decoding summaries and their utterance-weighted merge."""
import pytest

from espnet_eexit.exit_info import format_exit_info, main, merge_exit_info, read_exit_info, summarise


def test_policy_summaries_of_two_jobs_merge_weighted_by_utterances(tmp_path):
    a = summarise(12, 3, 2 + 6 + 6, policy="entropy threshold=0.3", exit_counts={2: 1, 6: 2})
    b = summarise(12, 1, 12.0, policy="entropy threshold=0.3", exit_counts={12: 1})
    for name, info in (("a", a), ("b", b)):
        (tmp_path / name).write_text(format_exit_info(info))
    main([str(tmp_path / "merged"), str(tmp_path / "a"), str(tmp_path / "b")])
    merged = read_exit_info(tmp_path / "merged")
    assert merged["exit_policy"] == "entropy threshold=0.3"  # values with spaces survive
    assert merged["utterances"] == "4"
    assert merged["layers_computed_per_utterance"] == "6.500"  # (14 + 12) / 4
    assert merged["relative_depth"] == "0.542" and merged["encoder_layers_saved"] == "0.458"
    assert merged["exit_counts"] == "2:1 6:2 12:1"
    assert merged["mean_exit_layer"] == "6.500"  # (2 + 6 + 6 + 12) / 4


def test_fixed_exit_summary_and_missing_part(tmp_path):
    info = summarise(6, 5, 10.0, exit_layer=2)
    assert info["exit_layer"] == "2" and info["relative_depth"] == "0.333"
    assert merge_exit_info([info, info])["utterances"] == "10"
    with pytest.raises(SystemExit, match="missing"):
        main([str(tmp_path / "out"), str(tmp_path / "nope")])


def test_decodings_per_utterance_merge_weighted_by_utterances():
    a = summarise(4, 2, 6, policy="entropy threshold=0.1", exit_counts={2: 1, 4: 1}, decodings=3)
    b = summarise(4, 6, 24, policy="entropy threshold=0.1", exit_counts={4: 6}, decodings=12)
    assert a["decodings_per_utterance"] == "1.500"
    merged = merge_exit_info([read_exit_info_of(a), read_exit_info_of(b)])
    assert merged["decodings_per_utterance"] == "1.875"  # (3 + 12) / 8
    assert "decodings_per_utterance" not in summarise(4, 2, 6, exit_layer=2)


def read_exit_info_of(info):
    """As a job's exit_info file reads back."""
    return dict(line.split(" ", 1) for line in format_exit_info(info).splitlines())
