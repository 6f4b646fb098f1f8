"""The documentation stands alone and stays in step with the code.

The README is the front door: short, showing CI's test command verbatim, with a package map
that matches the folders and an index of every document in ``docs/``. No link leaves the
repository or points at a file that is not there. ``docs/configuration.md`` names every
setting of ``pathwatch.config.Settings`` (environment variable and TOML key), and no
document names a ``PATHWATCH_*`` variable that nothing reads.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pathwatch.config import Settings
from streams.ports import TopicNames

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *DOCS, ROOT / "benchmarks" / "RESULTS.md"]

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_ENV = re.compile(r"\bPATHWATCH_[A-Z0-9_]*[A-Z0-9]")
README_MAX_LINES = 160


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a markdown text ('' when there is none)."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def links(path: Path) -> list[str]:
    return _LINK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_inside_the_repository_and_resolves(path: Path) -> None:
    assert path.exists(), f"{path.relative_to(ROOT)} is missing"
    bad = []
    for target in links(path):
        if target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        resolved = (path.parent / file).resolve()
        if "://" in target or target.startswith("mailto:") or not resolved.is_relative_to(ROOT):
            bad.append(f"{target} leaves the repository")
        elif not resolved.exists():
            bad.append(f"{target} does not exist")
    assert not bad, f"{path.relative_to(ROOT)}: " + "; ".join(bad)


def test_readme_is_a_short_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_shows_the_command_ci_runs() -> None:
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    command = ci[-1]
    assert command == "scripts/test"
    shown = [ln.strip().split("#", 1)[0].strip() for ln in README.read_text(encoding="utf-8").splitlines()]
    assert command in shown, f"README.md does not show CI's command {command!r} on a line of its own"


def tracked_top_level_folders() -> set[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return {name.split("/", 1)[0] for name in out.splitlines() if "/" in name and not name.startswith(".")}


def test_readme_package_map_matches_the_folders() -> None:
    body = section(README.read_text(encoding="utf-8"), "Map of the packages")
    listed = set(re.findall(r"^\s*[-|]\s*`([A-Za-z0-9_.-]+)/`", body, re.M))
    assert listed, "README.md has no '## Map of the packages' listing `folder/` entries"
    folders = tracked_top_level_folders()
    assert not folders - listed, f"folders missing from the README's map: {sorted(folders - listed)}"
    assert not listed - folders, f"the README's map lists folders that do not exist: {sorted(listed - folders)}"


def test_readme_indexes_every_document() -> None:
    targets = {(ROOT / t.split("#", 1)[0]).resolve() for t in links(README) if not t.startswith("#")}
    missing = [d.name for d in DOCS if d.resolve() not in targets]
    assert not missing, f"README.md does not link to docs/{', docs/'.join(missing)}"


def setting_names() -> dict[str, str]:
    """Environment variable -> TOML key for every setting (nested topics as ``topics.<name>``)."""
    names = {f"PATHWATCH_{field.upper()}": field for field in Settings.model_fields if field != "topics"}
    for field in TopicNames.__dataclass_fields__:
        names[f"PATHWATCH_TOPICS__{field.upper()}"] = f"topics.{field}"
    return names


def test_configuration_reference_names_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    missing = []
    for env, key in setting_names().items():
        row = next((r for r in rows if re.search(rf"`{env}`", r)), None)
        if row is None or f"`{key}`" not in row:
            missing.append(f"{env} / {key}")
    assert not missing, "docs/configuration.md has no table row naming " + ", ".join(missing)


def script_variables() -> set[str]:
    found: set[str] = set()
    for path in [*(ROOT / "scripts").iterdir(), ROOT / "docker-compose.yml"]:
        found.update(_ENV.findall(path.read_text(encoding="utf-8")))
    return found


def test_documents_name_only_variables_that_something_reads() -> None:
    known = set(setting_names()) | {"PATHWATCH_TOPICS"} | script_variables()  # TOPICS: all names as JSON
    stale = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in DOCUMENTS
        for name in _ENV.findall(path.read_text(encoding="utf-8"))
        if name not in known
    }
    assert not stale, "unknown PATHWATCH_ variables: " + "; ".join(sorted(stale))
