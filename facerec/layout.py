"""The dataset layout rules: where the identity folders are, and which paths under them are data."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from facerec.errors import PipelineInputError

JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})
_MAX_WRAPPER_DEPTH = 32  # a bound, not a limit anyone meets: wrappers are one or two levels deep
EXPECTED_LAYOUT = (
    "expected <root>/<identity>/<image files>, e.g. "
    "105_classes_pins_dataset/pins_<Name>/<file>.jpg or orl_faces/s1/1.png, "
    "optionally inside wrapper folders (a wrapper may hold README or licence files beside its one folder)"
)


@dataclass(frozen=True)
class DatasetRoot:
    """The folder whose sub-folders are identities, and what was left beside it on the way down."""

    root: Path
    ignored: list[str]  # POSIX paths relative to the searched tree; folders end in "/"


def is_junk_name(name: str) -> bool:
    """True for OS metadata files and folders (macOS, Windows) that are never data."""
    return name in JUNK_NAMES or name.startswith("._")


def is_hidden_name(name: str) -> bool:
    """True for dot-files and dot-folders, which are tool state (.git, .ipynb_checkpoints), not data."""
    return name.startswith(".") and name not in (".", "..")


def layout_status(relative_parts: tuple[str, ...]) -> str | None:
    """Status a file gets from its place alone (junk, hidden, no_identity, nested), or None."""
    if any(is_junk_name(part) for part in relative_parts):
        return "junk"
    if any(is_hidden_name(part) for part in relative_parts):
        return "hidden"
    if len(relative_parts) == 1:
        return "no_identity"
    if len(relative_parts) > 2:
        # <identity>/<sub>/<image>: the label is ambiguous (the outer or the inner folder), and a
        # wrong guess trains on wrong labels, so such images are reported and left out.
        return "nested"
    return None


def printable_name(name: str) -> str:
    """A file name as text UTF-8 can store: undecodable bytes (non-UTF-8 names) shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def identity_from_folder(folder_name: str) -> str:
    """Identity label of a folder: the name without Kaggle's `pins_` prefix, otherwise verbatim."""
    return folder_name.removeprefix("pins_")


@dataclass(frozen=True)
class TreeEntry:
    """One child in a dataset tree: its POSIX path from the top, and whether it is a real folder."""

    path: str
    is_folder: bool  # a directory that is not a link; links and special files count as files

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _is_real_folder(path: Path) -> bool:
    """A directory that is not a symlink (links are never followed)."""
    return path.is_dir() and not path.is_symlink()


def _is_data_name(name: str) -> bool:
    """False for OS metadata and hidden entries, which are never identities or images of ours."""
    return not (is_junk_name(name) or is_hidden_name(name))


def locate_root(children: Callable[[str], list[TreeEntry]], is_image: Callable[[str], bool],
                tree_name: str) -> tuple[str, list[str]]:
    """Descend as a person would: through levels holding one folder plus only non-image files.

    Works on any tree (a folder on disk, a zip's listing): `children("")` lists the top, and
    `is_image(path)` tells whether a file's header is an image. Returns the root's path ("" for
    the top) and what was left beside the wrappers (folders end in "/").
    """
    current, ignored = "", []
    for _ in range(_MAX_WRAPPER_DEPTH):
        entries = sorted(children(current), key=lambda entry: entry.path)
        folders = [entry for entry in entries if entry.is_folder and _is_data_name(entry.name)]
        others = [entry for entry in entries if entry not in folders]
        # A lone folder is a wrapper only if it has folders itself (otherwise it is the one
        # identity of a single-class dataset) and nothing beside it is an image of the root.
        wrapper = (len(folders) == 1
                   and not any(is_image(other.path) for other in others
                               if not other.is_folder and _is_data_name(other.name))
                   and any(child.is_folder and _is_data_name(child.name) for child in children(folders[0].path)))
        if wrapper:
            ignored += [other.path + ("/" if other.is_folder else "") for other in others]
            current = folders[0].path
            continue
        if folders:
            return current, ignored
        break
    raise PipelineInputError(f"No identity folders found under {tree_name}; {EXPECTED_LAYOUT}.")


def is_image_data(handle) -> bool:
    """True if Pillow recognises the header as an image (content, not extension)."""
    try:
        with Image.open(handle):
            return True
    except Exception:  # any header Pillow cannot identify, whatever the plugin raises
        return False


def find_dataset_root(tree: Path) -> DatasetRoot:
    """The identity folders' parent in a folder on disk (locate_root over the folder)."""
    tree = Path(tree)
    if not tree.is_dir():  # the path the user gave may be a link; links inside it are not followed
        raise PipelineInputError(f"Dataset folder not found: {tree}; {EXPECTED_LAYOUT}.")

    def children(relative: str) -> list[TreeEntry]:
        folder = tree / relative if relative else tree
        return [TreeEntry(child.relative_to(tree).as_posix(), _is_real_folder(child)) for child in folder.iterdir()]

    def is_image(relative: str) -> bool:
        path = tree / relative
        return path.is_file() and not path.is_symlink() and is_image_data(path)

    root, ignored = locate_root(children, is_image, str(tree))
    return DatasetRoot(tree / root if root else tree, ignored)
