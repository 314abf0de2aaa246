"""Documentation: every relative link in README.md and docs/ names a file that exists and a heading it has."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, letters, digits, spaces, '-' and '_' kept, spaces as '-'."""
    kept = "".join(char for char in heading.strip().lower()
                   if char in " -_" or unicodedata.category(char)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """The anchors of a Markdown file's headings outside code fences (repeats numbered as GitHub does)."""
    found, seen, in_code = set(), {}, False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not in_code:
            anchor = heading_anchor(heading.group(1))
            found.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
            seen[anchor] = seen.get(anchor, 0) + 1
    return found


def test_relative_links_resolve_to_files_and_headings():
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)
