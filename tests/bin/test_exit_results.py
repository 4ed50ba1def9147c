"""exit_results.update_section: a recipe's RESULTS.md keeps one section per experiment."""
from espnet_eexit.bin.exit_results import update_section


def test_sections_are_replaced_in_place_and_others_kept(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n\nintro\n")
    update_section(md, "exp a", "A first")
    update_section(md, "exp b", "B")
    update_section(md, "exp a", "A second")
    text = md.read_text()
    assert text.startswith("# RESULTS\n\nintro\n")
    assert "A first" not in text and text.count("<!-- results: exp a -->") == 1
    assert text.index("A second") < text.index("B")  # replaced where it was
    assert "<!-- end results: exp a -->\n\n<!-- results: exp b -->" in text
