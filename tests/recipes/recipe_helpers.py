"""Run a recipe of egs2/ in a temporary copy (tools/ and egs2/TEMPLATE linked from the repo)."""
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def require_tools(*tools: str) -> None:
    """Fail (never skip) when a tool the end-to-end tests need is missing: a skip in CI would hide a
    broken install."""
    missing = [t for t in tools if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} not found: run tools/install.sh (it installs them)"


def copy_recipe(root: Path, name: str) -> Path:
    """A copy of ``egs2/<name>/asr1`` in ``root`` with the repository's tools/, conf/ and TEMPLATE
    linked in (call it again with the same root for recipes that link each other)."""
    (root / "egs2").mkdir(parents=True, exist_ok=True)
    for link, target in ((root / "tools", REPO / "tools"), (root / "conf", REPO / "conf"),
                         (root / "egs2" / "TEMPLATE", REPO / "egs2" / "TEMPLATE")):
        if not link.is_symlink():
            link.symlink_to(target)
    recipe = root / "egs2" / name / "asr1"
    shutil.copytree(REPO / "egs2" / name / "asr1", recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "RESULTS.md"))
    return recipe


def run(recipe: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True,
                          timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def results_rows(results_md: str, depths: dict, columns: int):
    """Check RESULTS.md has, per exit k, a row ``| k | k/L | numbers... |``; return the rows."""
    rows = {}
    for k, depth in depths.items():
        row = re.search(rf"^\| {k} \| {depth} \|(.*)\|$", results_md, re.M)
        assert row, results_md
        cells = [c.strip() for c in row.group(1).split("|")]
        assert len(cells) == columns and all(re.fullmatch(r"\d+\.\d", c) for c in cells), cells
        rows[k] = [float(c) for c in cells]
    return rows
