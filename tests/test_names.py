"""One spelling of the component's name in code: "labeller".

"labeler" survives only inside string literals that name deployed things (the `photo-labeler` stack and resource
prefix, the `HotelPhotoLabeler` metric namespace, the `photo_labeler` context key): renaming those would replace
the labels table and the endpoint of every existing deployment and break every `-c photo_labeler...` command a
user has written down, so they stay as data.
"""

from __future__ import annotations

import io
import subprocess
import tokenize
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OTHER_SPELLING = "labeler"


def tracked_python_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [REPO_ROOT / line for line in listing.stdout.splitlines() if (REPO_ROOT / line).is_file()]


def misspelled_names(source: str) -> list[str]:
    """Identifiers (modules, classes, functions, variables, attributes) spelled with "labeler"."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    names = (token.string for token in tokens if token.type == tokenize.NAME)
    return [name for name in names if OTHER_SPELLING in name.lower()]


def test_the_checker_catches_the_other_spelling_in_names_but_not_in_deployed_name_strings() -> None:
    source = 'class PhotoLabelerStack:\n    prefix = "photo-labeler"\n\ndef get_labeler(): ...\n'
    assert misspelled_names(source) == ["PhotoLabelerStack", "get_labeler"]


def test_no_identifier_or_file_name_uses_the_other_spelling() -> None:
    files = tracked_python_files()
    assert len(files) > 100, "git ls-files found too few files: is this a checkout?"
    offenders = {
        str(path.relative_to(REPO_ROOT)): names
        for path in files
        if (names := misspelled_names(path.read_text(encoding="utf-8")))
        or OTHER_SPELLING in str(path.relative_to(REPO_ROOT)).lower()
    }
    assert offenders == {}
