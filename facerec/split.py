"""Seeded, identity-stratified train/val/test split that keeps duplicate groups in one split (or not: random)."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from facerec.config import SplitConfig, as_plain_dict
from facerec.dedupe import BURST_SIGNAL, KEYPOINT_SIGNAL, BurstCheck, Grouping, KeypointCheck, group_duplicates
from facerec.fingerprints import FINGERPRINT_COLUMNS, compute_fingerprints, open_for_fingerprint, upright_grey
from facerec.errors import PipelineInputError
from facerec.image_store import open_images
from facerec.verify import open_rgb

log = logging.getLogger(__name__)

# Tie-break order when two splits need a group equally: fill the small held-out splits first.
SPLITS = ("test", "val", "train")


@dataclass
class SplitResult:
    """The split frames (manifest order), a JSON-able report and the label conflicts found."""

    splits: dict[str, pd.DataFrame]
    report: dict
    conflicts: pd.DataFrame


def select_identities(frame: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Keep the requested identities: explicit list first, then the first N by name."""
    present = sorted(frame["identity"].unique())
    chosen = present
    if config.identities:
        missing = sorted(set(config.identities) - set(present))
        if missing:
            raise PipelineInputError(
                f"split.identities names {missing[:5]} which have no ok images; "
                f"choose from e.g. {present[:5]}"
            )
        chosen = sorted(set(config.identities))
    if config.max_identities:
        chosen = chosen[: config.max_identities]
    return frame[frame["identity"].isin(chosen)]


def find_conflicts(frame: pd.DataFrame, keep_conflicts: bool) -> tuple[pd.DataFrame, pd.Series]:
    """Return one row per image of a multi-identity group, and a mask of rows to keep."""
    names_per_group = frame.groupby("group")["identity"].nunique()
    rows = frame[frame["group"].isin(names_per_group.index[names_per_group > 1])].copy()
    names: dict[int, set[str]] = {}
    for group, identity in zip(rows["group"], rows["identity"]):
        names.setdefault(group, set()).add(identity)
    rows["other_identities"] = [
        "; ".join(sorted(names[group] - {identity}))
        for group, identity in zip(rows["group"], rows["identity"])
    ]
    # Majority identity per group; ties go to the name that sorts first, so it is deterministic.
    counts = rows.groupby(["group", "identity"]).size().reset_index(name="images")
    counts = counts.sort_values(["group", "images", "identity"], ascending=[True, False, True])
    majority = counts.drop_duplicates("group").set_index("group")["identity"]
    rows["kept"] = keep_conflicts & (rows["identity"] == rows["group"].map(majority))
    keep = pd.Series(~frame.index.isin(rows.index[~rows["kept"]]), index=frame.index)
    columns = ["path", "identity", "group", "other_identities", "kept"]
    return rows[columns].reset_index(drop=True), keep


def assign_groups(sizes: pd.Series, fractions: dict[str, float], seed: list[int]) -> dict:
    """Map each group (index of `sizes`, its image count) of one identity to a split name."""
    total = int(sizes.sum())
    targets = {name: max(1, round(total * fractions[name])) for name in ("test", "val")}
    targets["train"] = total - targets["test"] - targets["val"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sizes))
    # Largest groups first (ties in seeded random order) so single images can even out the counts.
    order = order[np.argsort(-sizes.to_numpy()[order], kind="stable")]
    filled = dict.fromkeys(SPLITS, 0)
    group_count = dict.fromkeys(SPLITS, 0)
    assignment = {}
    for position, index in enumerate(order):
        empty = [name for name in SPLITS if group_count[name] == 0]
        # When only as many groups remain as splits are empty, each empty split must get one.
        candidates = empty if len(order) - position <= len(empty) else SPLITS
        choice = max(candidates, key=lambda name: targets[name] - filled[name])
        assignment[sizes.index[index]] = choice
        filled[choice] += int(sizes.iloc[index])
        group_count[choice] += 1
    return assignment


def pick_unknown(identities: list[str], count: int, seed: int) -> list[str]:
    """Choose `count` identities by the seed for the open-set "unknown" split."""
    if count >= len(identities):
        raise PipelineInputError(
            f"split.unknown_identities = {count} leaves no identity for train/val/test "
            f"({len(identities)} identities available); lower it"
        )
    chosen = np.random.default_rng(seed).choice(len(identities), size=count, replace=False)
    return sorted(identities[index] for index in chosen)


def build_report(config, selected, grouping, conflicts, too_small, unknown, splits) -> dict:
    """Summarise what was found and decided, as JSON-able numbers and names."""
    group_sizes = selected["group"].value_counts()
    return {
        "images_selected": len(selected),
        "identities_selected": int(selected["identity"].nunique()),
        "groups": len(group_sizes),
        "duplicate_groups": int((group_sizes > 1).sum()),
        "images_in_duplicate_groups": int(group_sizes[group_sizes > 1].sum()),
        "exact_duplicate_pairs": len(grouping.exact_pairs),
        "near_duplicate_pairs": len(grouping.near_pairs),
        "keypoint_candidate_pairs": grouping.keypoint_candidates,
        "burst_candidate_pairs": grouping.burst_candidates,
        "conflict_groups": int(conflicts["group"].nunique()),
        "conflict_images": len(conflicts),
        "conflict_images_dropped": int((~conflicts["kept"]).sum()),
        "excluded_identities": {name: int(count) for name, count in too_small.items()},
        "unknown_identities": unknown,
        **leaks(selected, grouping, splits),
        "split_images": {name: len(frame) for name, frame in splits.items()},
        "split_identities": {
            name: int(frame["identity"].nunique()) for name, frame in splits.items()
        },
        "params": as_plain_dict(config),
    }


def split_metrics(report: dict) -> dict[str, int]:
    """The few numbers `dvc metrics show` prints for the split: duplicates, and how many leak."""
    return {
        "duplicate_groups": report["duplicate_groups"],
        "groups_in_several_splits": report["groups_in_several_splits"],
        "pairs_across_splits": report["exact_pairs_across_splits"] + report["near_pairs_across_splits"],
    }


def fingerprints_of(frame: pd.DataFrame, manifest_rows: int, image_dir: Path,
                    fingerprints: pd.DataFrame | None, workers: int | None) -> pd.DataFrame:
    """Return the fingerprints of `frame`'s rows: given (manifest-aligned) or computed from the images."""
    if fingerprints is None:
        return compute_fingerprints([Path(image_dir) / path for path in frame["path"]], workers)
    missing = sorted(set(FINGERPRINT_COLUMNS) - set(fingerprints.columns))
    if missing or len(fingerprints) != manifest_rows:
        raise PipelineInputError(
            f"got fingerprints with {len(fingerprints)} rows and columns {list(fingerprints.columns)} "
            f"for {manifest_rows} manifest rows; need one row per manifest row and the columns "
            f"{list(FINGERPRINT_COLUMNS)} (rerun `dvc repro download`, or pass none to compute them)"
        )
    return fingerprints.reset_index(drop=True).loc[frame.index, list(FINGERPRINT_COLUMNS)].reset_index(drop=True)


def candidate_opener(paths: pd.Series, image_dir: Path, check: str, decode: Callable[[BinaryIO], Image.Image]):
    """A thread-safe opener of the image at a row of `paths` in `image_dir`, decoded by `decode`, for `check`."""
    paths, store, opening = paths.tolist(), [], threading.Lock()

    def images():
        with opening:  # opened once, and only when a candidate needs checking; called from threads
            if not store:
                store.append(open_images(image_dir))
        return store[0]

    def open_row(row: int) -> Image.Image:
        path = paths[row]
        try:
            return decode(images().open(path))
        except (OSError, ValueError) as error:
            # Pillow names the in-memory stream (<_io.BytesIO object at 0x...>) where a file would stand.
            reason = "not an image Pillow can identify" if isinstance(error, UnidentifiedImageError) else error
            raise PipelineInputError(
                f"cannot decode {path} in {image_dir} for the {check}: {reason}; the image changed after the "
                "download stage verified it: restore it with `dvc checkout`, or rerun `dvc repro` to verify "
                "the dataset again") from error
    return open_row


def keypoint_check(paths: pd.Series, image_dir: Path, config: SplitConfig,
                   workers: int | None = None) -> KeypointCheck:
    """The keypoint check of the split's settings, reading the grey images of `paths` (by row) from `image_dir`."""
    open_grey = candidate_opener(paths, image_dir, "keypoint check", lambda source: upright_grey(open_for_fingerprint(source)))
    return KeypointCheck(config.keypoint_candidate_min_cosine, config.keypoint_min_inliers, open_grey, workers)


def burst_check(paths: pd.Series, image_dir: Path, config: SplitConfig, workers: int | None = None) -> BurstCheck:
    """The burst check of the split's settings, reading the colour images of `paths` (by row) from `image_dir`."""
    return BurstCheck(config.burst_max_delta_e, candidate_opener(paths, image_dir, "burst check", open_rgb), workers)


def drop_small_identities(known: pd.DataFrame, minimum: int) -> tuple[pd.DataFrame, pd.Series]:
    """Remove identities with fewer than `minimum` distinct images (groups), with a warning."""
    distinct = known.groupby("identity")["group"].nunique()
    too_small = distinct[distinct < minimum]
    if len(too_small):
        log.warning(
            "excluded %d identities with fewer than %d distinct images: %s",
            len(too_small),
            minimum,
            too_small.to_dict(),
        )
    known = known[~known["identity"].isin(too_small.index)]
    if known.empty:
        raise PipelineInputError(
            "no identity has enough distinct images to split; lower split.min_images_per_identity"
        )
    return known, too_small


def require_two_identities_in_data(manifest: pd.DataFrame, ok_rows: pd.DataFrame) -> None:
    """Stop when the dataset itself has fewer than two people with usable images."""
    present = sorted(ok_rows["identity"].unique())
    if len(present) >= 2:
        return
    rejected = manifest.loc[manifest["status"] != "ok", "status"].value_counts().sort_index().to_dict()
    raise PipelineInputError(
        f"The manifest has ok images of {len(present)} identities {present}; a classifier needs at "
        f"least two. Files not used, by status: {rejected or 'none'} (docs/data.md explains each; "
        "unsupported_format images can be used once converted to JPEG or PNG). Point "
        "download.source at a dataset with one folder of images per person."
    )


def require_two_identities(known: pd.DataFrame, selected: pd.DataFrame, present: int,
                           unknown: list[str], too_small: pd.Series) -> None:
    """Stop before training a one-class model, whose 100 % accuracy would mean nothing."""
    remaining = sorted(known["identity"].unique())
    if len(remaining) >= 2:
        return
    raise PipelineInputError(
        f"A classifier needs at least two identities to train: the data has {present}, "
        f"split.identities / split.max_identities select {selected['identity'].nunique()}, "
        f"split.unknown_identities holds out {len(unknown)}, split.min_images_per_identity excludes "
        f"{len(too_small)}, leaving {remaining}; change those params so that at least two remain."
    )


def require_training_images(known: pd.DataFrame, assigned: pd.Series) -> None:
    """Every identity in val/test must have training images, or the model cannot know it."""
    trained = set(known.loc[assigned == "train", "identity"])
    untrained = sorted(set(known["identity"]) - trained)
    if untrained:
        raise PipelineInputError(
            f"The split leaves identities {untrained[:5]} without a training image; raise "
            "split.min_images_per_identity or lower split.val_fraction / split.test_fraction."
        )


def split_of_rows(known: pd.DataFrame, config: SplitConfig, seed: int) -> pd.Series:
    """Return the split name of every row, deciding units identity by identity.

    The unit is a duplicate group (strategy grouped) or a single image (strategy random: the
    identity-stratified split that ignores duplicates).
    """
    fractions = {"val": config.val_fraction, "test": config.test_fraction}
    units = known["group"] if config.strategy == "grouped" else pd.Series(range(len(known)), index=known.index)
    split_of_unit = {}
    for identity, rows in units.groupby(known["identity"], sort=True):
        # Seeded per identity, so adding or removing other identities leaves this one unchanged.
        identity_seed = [seed, zlib.crc32(identity.encode("utf-8"))]
        sizes = rows.value_counts().sort_index()
        split_of_unit.update(assign_groups(sizes, fractions, identity_seed))
    return units.map(split_of_unit)


def pairs_across(pairs: np.ndarray, where: np.ndarray) -> int:
    """How many of the (k, 2) row pairs have both rows in a split, and not the same one."""
    first, second = where[pairs[:, 0]], where[pairs[:, 1]]
    return int((pd.notna(first) & pd.notna(second) & (first != second)).sum())


def leaks(selected: pd.DataFrame, grouping: Grouping, splits: dict[str, pd.DataFrame]) -> dict:
    """Count the duplicate groups, and exact/near pairs, whose images sit in more than one split."""
    split_of_path = pd.concat([frame["path"].to_frame().assign(split=name) for name, frame in splits.items()])
    # Split name per selected row (positions as in the pairs); NaN for rows no split kept.
    where = selected["path"].map(split_of_path.set_index("path")["split"]).to_numpy()
    placed = pd.notna(where)
    splits_per_group = pd.Series(where[placed]).groupby(selected["group"].to_numpy()[placed]).nunique()
    return {
        "groups_in_several_splits": int((splits_per_group > 1).sum()),
        "exact_pairs_across_splits": pairs_across(grouping.exact_pairs, where),
        "near_pairs_across_splits": pairs_across(grouping.near_pairs, where),
        "near_pairs_by_signal": {column: {"pairs": len(pairs), "across_splits": pairs_across(pairs, where)}
                                 for column, pairs in grouping.signal_pairs.items()},
    }


def split_manifest(
    manifest: pd.DataFrame, image_dir: Path, config: SplitConfig, seed: int,
    fingerprints: pd.DataFrame | None = None, workers: int | None = None,
) -> SplitResult:
    """Group duplicates, drop conflicts, hold out unknowns and split the rest by identity.

    `fingerprints` (facerec.fingerprints.FINGERPRINT_COLUMNS), when given, has one row per row of
    `manifest` (rows of non-ok images are ignored); otherwise the selected images under
    `image_dir` are fingerprinted here by `workers` processes (None: every core); the keypoint
    check decodes its candidate images on as many threads.
    """
    manifest = manifest.reset_index(drop=True)
    ok_rows = manifest[manifest["status"] == "ok"].astype({"identity": str})
    require_two_identities_in_data(manifest, ok_rows)
    selected = select_identities(ok_rows, config).copy()
    started = time.perf_counter()
    selected_fingerprints = fingerprints_of(selected, len(manifest), image_dir, fingerprints, workers)
    grouping = group_duplicates(selected["sha256"].tolist(), selected_fingerprints,
                                config.near_duplicate_max_distance, config.near_duplicate_min_cosine,
                                keypoint_check(selected["path"], image_dir, config, workers),
                                burst_check(selected["path"], image_dir, config, workers))
    selected["group"] = grouping.group
    log.info(
        "fingerprinted and grouped %d images into %d groups (%d exact, %d near-duplicate pairs; keypoints "
        "joined %d of %d candidate pairs, the burst check %d of the %d left) in %.1f s",
        len(selected),
        selected["group"].nunique(),
        len(grouping.exact_pairs),
        len(grouping.near_pairs),
        len(grouping.signal_pairs[KEYPOINT_SIGNAL]),
        grouping.keypoint_candidates,
        len(grouping.signal_pairs[BURST_SIGNAL]),
        grouping.burst_candidates,
        time.perf_counter() - started,
    )
    conflicts, keep = find_conflicts(selected, config.keep_conflicts)
    if len(conflicts):
        log.warning(
            "%d images in %d groups carry more than one identity; %d dropped (keep_conflicts=%s)",
            len(conflicts),
            conflicts["group"].nunique(),
            int((~keep).sum()),
            config.keep_conflicts,
        )
    frame = selected[keep]
    unknown = pick_unknown(
        sorted(frame["identity"].unique()), config.unknown_identities, seed
    )
    known, too_small = drop_small_identities(
        frame[~frame["identity"].isin(unknown)], config.min_images_per_identity
    )
    require_two_identities(known, selected, ok_rows["identity"].nunique(), unknown, too_small)
    assigned = split_of_rows(known, config, seed)
    require_training_images(known, assigned)
    columns = ["path", "identity", "group"]
    splits = {
        name: known.loc[assigned == name, columns].reset_index(drop=True)
        for name in ("train", "val", "test")
    }
    if config.unknown_identities:
        splits["unknown"] = frame.loc[frame["identity"].isin(unknown), columns].reset_index(
            drop=True
        )
    for name, rows in splits.items():
        log.info("%s: %d images of %d identities", name, len(rows), rows["identity"].nunique())
    report = build_report(config, selected, grouping, conflicts, too_small, unknown, splits)
    report["images_ok"] = len(ok_rows)
    report["params"]["seed"] = seed
    return SplitResult(splits=splits, report=report, conflicts=conflicts)
