"""Code tests for the split: leak-free, stratified, seeded, with conflicts and holdouts handled."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from test_dedupe import burst_and_recrop, hostile_pack  # noqa: F401 (a fixture)
from test_bursts import burst_portraits
from test_keypoints import portraits
from PIL import Image

from facerec.bursts import pair_colour_differences
from facerec.dedupe import KEYPOINT_SIGNAL, group_duplicates
from facerec.fingerprints import FINGERPRINT_COLUMNS, fingerprint
from facerec.keypoints import pair_inliers
from facerec.errors import PipelineInputError
from facerec.split import burst_check, keypoint_check, split_manifest

SEED = 1
BASE = replace(tiny_config().split, val_fraction=0.2, test_fraction=0.2, min_images_per_identity=5,
               near_duplicate_max_distance=40)
IDENTITIES = {"Alice Doe": 14, "bob": 14, "carol": 14, "Zoë Ångström": 12, "李 雷": 12, "tiny": 4}


def pink_noise_jpeg(rng: np.random.Generator, size_px: int = 48, quality: int = 90) -> bytes:
    """JPEG bytes of an image with a photo-like 1/f spectrum (stable perceptual hash)."""
    radius = np.hypot(np.fft.fftfreq(size_px)[:, None], np.fft.fftfreq(size_px)[None, :])
    amplitude = 1 / np.maximum(radius, 1 / size_px)
    channels = []
    for _ in range(3):
        field = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random(radius.shape))))
        channels.append((field - field.min()) / (field.max() - field.min()) * 255)
    return reencode(Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8)), quality)


def reencode(image: Image.Image, quality: int) -> bytes:
    """Encode an image as JPEG bytes at `quality`."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def manifest_row(raw_dir: Path, path: str, status: str = "ok") -> dict:
    """One manifest row for a file under raw_dir."""
    data = (raw_dir / path).read_bytes() if status == "ok" else b""
    return {
        "path": path, "identity": path.split("/")[0], "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "width": 48, "height": 48,
        "mode": "RGB", "format": "JPEG", "status": status,
    }  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """Tiny raw folder with planted exact, near and cross-identity duplicates, plus its manifest."""
    raw_dir = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(11)
    for identity, count in IDENTITIES.items():
        (raw_dir / identity).mkdir()
        for index in range(count):
            (raw_dir / identity / f"img_{index:02d}.jpg").write_bytes(pink_noise_jpeg(rng))
    alice = raw_dir / "Alice Doe" / "img_00.jpg"
    (raw_dir / "Alice Doe" / "exact copy.jpg").write_bytes(alice.read_bytes())
    (raw_dir / "Alice Doe" / "img_00 q60.jpg").write_bytes(reencode(Image.open(alice), 60))
    bob = Image.open(raw_dir / "bob" / "img_01.jpg").resize((40, 40), Image.LANCZOS)
    (raw_dir / "bob" / "img_01 small.jpg").write_bytes(reencode(bob, 90))
    # A scene under Alice Doe as three files: a frame, the next frame and a re-crop.
    for name, image in list(burst_and_recrop().items())[:3]:
        (raw_dir / "Alice Doe" / f"scene {name}.jpg").write_bytes(reencode(image, 90))
    # carol/img_02 is also filed (re-encoded) under 李 雷, and copied once more under carol.
    carol = raw_dir / "carol" / "img_02.jpg"
    (raw_dir / "carol" / "img_02 copy.jpg").write_bytes(carol.read_bytes())
    (raw_dir / "李 雷" / "conflict.jpg").write_bytes(reencode(Image.open(carol), 80))
    paths = sorted(path.relative_to(raw_dir).as_posix() for path in raw_dir.rglob("*.jpg"))
    rows = [manifest_row(raw_dir, path) for path in paths]
    rows.append(manifest_row(raw_dir, "bob/truncated.jpg", status="truncated"))
    return pd.DataFrame(rows).sort_values("path", ignore_index=True), raw_dir


def run(dataset, seed=SEED, **changes):
    """Split the tiny dataset with BASE changed by `changes`."""
    manifest, raw_dir = dataset
    return split_manifest(manifest, raw_dir, replace(BASE, **changes), seed)


def split_of(result) -> dict[str, str]:
    """Map path → split name over all splits."""
    return {path: name for name, frame in result.splits.items() for path in frame["path"]}


def test_splits_are_disjoint_by_path_and_by_group(dataset):
    result = run(dataset)
    frames = [result.splits[name] for name in ("train", "val", "test")]
    paths = pd.concat([frame["path"] for frame in frames])
    assert not paths.duplicated().any(), "an image must not appear in two splits"
    groups = pd.concat([frame["group"].drop_duplicates() for frame in frames])
    assert not groups.duplicated().any(), "a duplicate group must not be spread over two splits"
    assert result.report["groups_in_several_splits"] == 0, "the report must confirm no leak"
    assert "bob/truncated.jpg" not in set(paths), "rows whose status is not ok take no part"
    for frame in frames:
        assert list(frame.columns) == ["path", "identity", "group"], "split frame schema"
        assert frame["path"].is_monotonic_increasing, "rows keep the manifest's (path) order"


def test_planted_duplicates_share_a_split(dataset):
    result = run(dataset)
    where = split_of(result)
    copies = ["Alice Doe/img_00.jpg", "Alice Doe/exact copy.jpg", "Alice Doe/img_00 q60.jpg"]
    alice = {where[path] for path in copies}
    assert len(alice) == 1, f"exact and re-encoded copies must land in one split: {alice}"
    assert where["bob/img_01.jpg"] == where["bob/img_01 small.jpg"], "downscaled copy stays with it"
    scene = {where[f"Alice Doe/scene {name}.jpg"] for name in ("frame", "next frame", "re-crop")}
    assert len(scene) == 1, f"a re-crop and the next frame of a burst land in the frame's split: {scene}"
    assert result.report["exact_duplicate_pairs"] == 2, "alice copy + carol copy are byte-identical"
    assert result.report["near_duplicate_pairs"] >= 3, "re-encoded, downscaled, conflict copies"


def portrait_folder(root: Path, portraits: dict, seed: int) -> pd.DataFrame:
    """Identities ann and ben with 5 pink-noise images each, the portraits under ann ("other person" under ben); their manifest."""
    rng = np.random.default_rng(seed)
    for identity in ("ann", "ben"):
        (root / identity).mkdir()
        for index in range(5):
            (root / identity / f"img_{index}.jpg").write_bytes(pink_noise_jpeg(rng))
    for name, image in portraits.items():
        folder = "ben" if name == "other person" else "ann"
        (root / folder / f"portrait {name}.jpg").write_bytes(reencode(image, 90))
    paths = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.jpg"))
    return pd.DataFrame([manifest_row(root, path) for path in paths])


def test_keypoint_check_reads_the_split_folder_and_joins_a_burst(tmp_path):
    # As when the split reads aligned crops (data/faces): fingerprints computed here, images decoded from the folder.
    manifest = portrait_folder(tmp_path, portraits(), seed=2)
    # Only the keypoint check can join: no phash pairs, thumbnails above every pair, a wide candidate band.
    config = replace(BASE, min_images_per_identity=3, near_duplicate_max_distance=0, near_duplicate_min_cosine=0.999,
                     keypoint_candidate_min_cosine=0.5, burst_max_delta_e=0)
    checked, again, unchecked = (
        split_manifest(manifest, tmp_path, replace(config, keypoint_min_inliers=inliers), SEED)
        for inliers in (config.keypoint_min_inliers, config.keypoint_min_inliers, 0))
    # ORB runs on threads and RANSAC draws random samples: neither may move an image between groups or splits.
    for name, frame in checked.splits.items():
        pd.testing.assert_frame_equal(frame, again.splits[name], obj=f"{name} of a second run with the check")
    assert checked.report == again.report, "a second run with the keypoint check reports the same"
    group = {path: number for frame in checked.splits.values() for path, number in zip(frame["path"], frame["group"])}
    burst = {group[f"ann/portrait {name}.jpg"] for name in ("frame", "re-crop", "next frame")}
    assert len(burst) == 1, f"the frame, its re-crop and the next frame are one group: {group}"
    assert group["ben/portrait other person.jpg"] not in burst, "another person's portrait stays apart"
    signal = checked.report["near_pairs_by_signal"]["keypoints"]
    assert signal == {"pairs": 3, "across_splits": 0}, f"the report counts the keypoint pairs: {signal}"
    assert checked.report["keypoint_candidate_pairs"] >= 3, "and the candidates it checked"
    assert unchecked.report["near_pairs_by_signal"]["keypoints"]["pairs"] == 0, "0 inliers switches the check off"
    assert unchecked.report["duplicate_groups"] == 0, "without it nothing joins the portraits"


def test_burst_check_joins_what_the_keypoint_check_leaves_and_reports_it(tmp_path):
    # The keypoint threshold above any pair: only the burst check can join the portraits.
    manifest = portrait_folder(tmp_path, burst_portraits(), seed=3)
    config = replace(BASE, min_images_per_identity=3, near_duplicate_max_distance=0, near_duplicate_min_cosine=0.999,
                     keypoint_candidate_min_cosine=0.5, keypoint_min_inliers=10_000)
    checked, again, unchecked = (split_manifest(manifest, tmp_path, replace(config, burst_max_delta_e=delta_e), SEED)
                                 for delta_e in (config.burst_max_delta_e, config.burst_max_delta_e, 0))
    assert checked.report == again.report, "a second run with the burst check reports the same"
    group = {path: number for frame in checked.splits.values() for path, number in zip(frame["path"], frame["group"])}
    assert group["ann/portrait frame.jpg"] == group["ann/portrait next frame.jpg"], f"the burst is one group: {group}"
    apart = ("relit copy", "other person")
    assert len({group[f"{'ben' if name == 'other person' else 'ann'}/portrait {name}.jpg"] for name in apart}
               | {group["ann/portrait frame.jpg"]}) == 3, f"another light and another person stay apart: {group}"
    signal = checked.report["near_pairs_by_signal"]["bursts"]
    assert signal == {"pairs": 1, "across_splits": 0}, f"the report counts the burst pairs: {signal}"
    assert checked.report["burst_candidate_pairs"] >= 3, "and the candidates it checked"
    assert checked.report["near_pairs_by_signal"]["keypoints"]["pairs"] == 0, "the keypoint check joined none"
    assert unchecked.report["burst_candidate_pairs"] == 0, "ΔE 0 switches the check off"
    assert unchecked.report["duplicate_groups"] == 0, "and without it nothing joins the portraits"


def test_keypoint_check_reads_hostile_images_alike_from_the_pack_and_a_folder(hostile_pack):
    # The split reads data/raw.zip, or a folder (aligned crops); every decoding path must reach ORB upright in grey.
    root, manifest = hostile_pack
    names = manifest["path"].str.removeprefix("person/").tolist()
    config = replace(BASE, near_duplicate_max_distance=0, near_duplicate_min_cosine=0.999,
                     keypoint_candidate_min_cosine=0.01)
    upright = names.index("upright.jpg")
    copies = ("exif rotated.jpg", "cmyk.jpg", "grey with alpha.png", "sixteen bit.png", "palette.gif", "tiny.jpg")
    detailless = ("flat.png", "flat grey.png", "panorama.jpg")  # flat in grey, or 5 px high at 160 px wide
    joined = {}
    for source in (root / "raw.zip", root / "dataset"):
        check = keypoint_check(manifest["path"], source, config)
        pairs = np.array([[names.index(name), upright] for name in copies + detailless])
        inliers = dict(zip(copies + detailless, pair_inliers(pairs, check.open_grey).tolist()))
        assert min(inliers[name] for name in copies) >= config.keypoint_min_inliers, (
            f"{source.name}: each copy of the photo agrees with it upright: {inliers}")
        assert [inliers[name] for name in detailless] == [0, 0, 0], (
            f"{source.name}: images without keypoints match nothing: {inliers}")
        grouping = group_duplicates(manifest["sha256"].tolist(), manifest[list(FINGERPRINT_COLUMNS)], 0,
                                    config.near_duplicate_min_cosine, check)
        joined[source.name] = grouping.signal_pairs[KEYPOINT_SIGNAL].tolist()
    assert joined["raw.zip"], "the band leaves pairs to the keypoint check"
    assert joined["raw.zip"] == joined["dataset"], f"the pack and the folder give the same keypoint pairs: {joined}"


@pytest.mark.parametrize("damage", ["not an image", "truncated"])
def test_image_checks_name_an_image_they_cannot_decode_and_the_fix(tmp_path, damage):
    (tmp_path / "ann").mkdir()
    photo = reencode(burst_portraits()["frame"], 90)
    (tmp_path / "ann" / "broken.jpg").write_bytes(b"not a jpeg" if damage == "not an image" else photo[: len(photo) // 2])
    checks = {"keypoint check": keypoint_check(pd.Series(["ann/broken.jpg"]), tmp_path, BASE).open_grey,
              "burst check": burst_check(pd.Series(["ann/broken.jpg"]), tmp_path, BASE).open_colour}
    for name, open_image in checks.items():
        with pytest.raises(PipelineInputError, match=f"cannot decode ann/broken.jpg .*{name}") as raised:
            open_image(0)
        message = str(raised.value)
        assert "dvc checkout" in message and "dvc repro" in message, f"the {name}'s error says how to restore: {message}"
        assert "<_io." not in message, f"the {name}'s error shows no Python object: {message}"


def test_burst_check_reads_hostile_images_alike_from_the_pack_and_a_folder(hostile_pack):
    # The burst check decodes in colour (no grey draft): every mode must reach it upright in RGB.
    root, manifest = hostile_pack
    names = manifest["path"].str.removeprefix("person/").tolist()
    others = [name for name in names if name != "upright.jpg"]
    pairs = np.array([[names.index(name), names.index("upright.jpg")] for name in others])
    differences = {}
    for source in (root / "raw.zip", root / "dataset"):
        check = burst_check(manifest["path"], source, BASE)
        assert all(check.open_colour(row).mode == "RGB" for row in range(len(names))), "each image decodes to RGB"
        differences[source.name] = dict(zip(others, pair_colour_differences(pairs, check.open_colour).tolist()))
    assert differences["raw.zip"] == differences["dataset"], f"the pack and the folder read alike: {differences}"
    measured, limit = differences["dataset"], BASE.burst_max_delta_e
    for copy in ("exif rotated.jpg", "cmyk.jpg", "palette.gif"):
        assert measured[copy] <= limit, f"{copy}: the photo in another encoding, read upright in its colours, agrees: {measured}"
    assert measured["sixteen bit.png"] > limit, f"a grey copy of the colour photo differs in colour: {measured}"
    for flat in ("flat.png", "flat grey.png"):
        assert measured[flat] >= 10 * limit, f"{flat}: a flat image is far from the photo, not NaN: {measured}"
    grey_pair = np.array([[names.index("sixteen bit.png"), names.index("grey with transparent black.png")]])
    grey = pair_colour_differences(grey_pair, check.open_colour)[0]
    assert grey <= limit / 4, f"two grey copies (16-bit, and 8-bit with a transparent shade) agree: ΔE {grey:.2f}"


def test_same_config_gives_identical_frames_and_seed_changes_them(dataset):
    first, second, other_seed = run(dataset), run(dataset), run(dataset, seed=2)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(first.splits[name], second.splits[name], obj=f"{name} rerun")
    assert split_of(first) != split_of(other_seed), "a different seed must change the assignment"
    assert set(split_of(first)) == set(split_of(other_seed)), "the seed must not change who is kept"


def random_fingerprints(rows: int, seed: int = 0) -> pd.DataFrame:
    """Random hex fingerprints of `rows` images, as long as real ones: far apart, so no duplicates."""
    rng = np.random.default_rng(seed)
    lengths = {column: len(text) // 2 for column, text in fingerprint(Image.new("RGB", (32, 32))).items()}
    return pd.DataFrame({column: [rng.bytes(size).hex() for _ in range(rows)] for column, size in lengths.items()})


def synthetic_manifest(counts: dict[str, int], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest rows without files, plus their random fingerprints (no duplicates)."""
    rows = [
        {
            "path": f"{name}/{index:03d}.jpg",
            "identity": name,
            "sha256": f"{name}-{index}",
            "status": "ok",
        }
        for name, count in counts.items()
        for index in range(count)
    ]
    return pd.DataFrame(rows), random_fingerprints(len(rows), seed)


@pytest.mark.parametrize("val_fraction,test_fraction", [(0.15, 0.15), (0.1, 0.25), (0.3, 0.2)])
def test_stratified_within_one_image_per_identity(val_fraction, test_fraction):
    counts = {f"person {n:02d}": n for n in (5, 7, 10, 13, 19, 26, 40, 77)}
    manifest, fingerprints = synthetic_manifest(counts)
    config = replace(BASE, val_fraction=val_fraction, test_fraction=test_fraction)
    result = split_manifest(manifest, Path("unused"), config, SEED, fingerprints=fingerprints)
    for name, fraction in (("val", val_fraction), ("test", test_fraction)):
        per_identity = result.splits[name]["identity"].value_counts()
        for identity, total in counts.items():
            wanted = max(1, round(total * fraction))
            got = per_identity.get(identity, 0)
            assert abs(got - wanted) <= 1, (
                f"{name} has {got} of {identity} ({total}), want ~{wanted}"
            )
    for name in ("train", "val", "test"):
        assert set(result.splits[name]["identity"]) == set(counts), f"every identity is in {name}"


def test_conflict_is_listed_and_dropped_by_default(dataset):
    result = run(dataset)
    listed = set(result.conflicts["path"])
    expected = {"carol/img_02.jpg", "carol/img_02 copy.jpg", "李 雷/conflict.jpg"}
    assert listed == expected, f"all images of the two-identity group are listed: {listed}"
    other = result.conflicts.set_index("path")["other_identities"]
    assert other["李 雷/conflict.jpg"] == "carol", "each row names the other identity"
    assert not listed & set(split_of(result)), "conflicting images are dropped by default"
    assert result.report["conflict_images_dropped"] == 3, "report counts the dropped images"


def test_keep_conflicts_keeps_the_majority_identity(dataset):
    where = split_of(run(dataset, keep_conflicts=True))
    assert "carol/img_02.jpg" in where and "carol/img_02 copy.jpg" in where, "majority kept"
    assert "李 雷/conflict.jpg" not in where, "the minority identity's copy is still dropped"


def test_small_identity_is_excluded_with_a_warning(dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="facerec.split"):
        result = run(dataset)
    assert "tiny" not in set(split_of(result).values()) | set(
        pd.concat(result.splits.values())["identity"]
    ), "an identity below min_images_per_identity is left out"
    assert result.report["excluded_identities"] == {"tiny": 4}, "report names it with its count"
    assert "tiny" in caplog.text, "the exclusion is logged as a warning naming the identity"


def test_identity_size_counts_distinct_images_not_copies(caplog):
    manifest, fingerprints = synthetic_manifest({"many": 10, "more": 10, "copies": 6})
    copies = manifest.index[manifest["identity"] == "copies"]
    # Six files of one picture are one distinct image.
    fingerprints.loc[copies] = fingerprints.loc[[copies[0]] * len(copies)].to_numpy()
    with caplog.at_level(logging.WARNING, logger="facerec.split"):
        result = split_manifest(manifest, Path("unused"), BASE, SEED, fingerprints=fingerprints)
    assert result.report["excluded_identities"] == {"copies": 1}, "copies count once"


def test_identities_subset_and_max_identities(dataset):
    subset = run(dataset, identities=["bob", "Zoë Ångström"])
    assert set(pd.concat(subset.splits.values())["identity"]) == {"bob", "Zoë Ångström"}, "subset"
    first_two = run(dataset, max_identities=2)
    names = set(pd.concat(first_two.splits.values())["identity"])
    wanted = {"Alice Doe", "Zoë Ångström"}  # code point order: capitals sort before "bob"
    assert names == wanted, f"max_identities keeps the first N by name: {names}"
    with pytest.raises(PipelineInputError, match="nobody"):
        run(dataset, identities=["nobody"])


def test_unknown_identities_are_held_out_entirely(dataset):
    result = run(dataset, unknown_identities=2)
    unknown = set(result.splits["unknown"]["identity"])
    assert len(unknown) == 2, f"two identities go to the unknown split: {unknown}"
    known = set(pd.concat([result.splits[n] for n in ("train", "val", "test")])["identity"])
    assert not unknown & known, "unknown identities must not appear in train/val/test"
    manifest, _ = dataset
    usable = manifest[
        (manifest["status"] == "ok") & ~manifest["path"].isin(result.conflicts["path"])
    ]
    for name in unknown:
        expected = int((usable["identity"] == name).sum())
        got = int((result.splits["unknown"]["identity"] == name).sum())
        assert got == expected, f"all ok images of {name} are in unknown"
    with pytest.raises(PipelineInputError, match="unknown_identities"):
        run(dataset, unknown_identities=len(IDENTITIES))


def test_non_ascii_identities_are_split_and_report_is_json(dataset):
    result = run(dataset)
    for name in ("Zoë Ångström", "李 雷"):
        for split in ("train", "val", "test"):
            assert name in set(result.splits[split]["identity"]), f"{name} is in {split}"
    assert json.loads(json.dumps(result.report, ensure_ascii=False)) == result.report, "JSON-able"


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match="split.test_fraction"):
        replace(BASE, test_fraction=0.9)
    with pytest.raises(ValueError, match="split.min_images_per_identity"):
        replace(BASE, min_images_per_identity=2)


def test_assignment_does_not_depend_on_hash_randomisation():
    script = (
        "import sys; from pathlib import Path; from tests.test_split import BASE, SEED, synthetic_manifest;"
        "from facerec.split import split_manifest;"
        "m, h = synthetic_manifest({'a b': 9, 'ç': 12, 'd': 30});"
        "r = split_manifest(m, Path('x'), BASE, SEED, fingerprints=h);"
        "sys.stdout.write(r.splits['test'].to_csv())"
    )
    root = Path(__file__).resolve().parents[1]
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": f"{root}:{root / 'tests'}"},
        ).stdout
        for seed in ("1", "2")
    }  # fmt: skip
    assert len(outputs) == 1, "string-hash randomisation must not change the split"


def test_one_identity_left_is_an_error_naming_the_params(dataset):
    with pytest.raises(PipelineInputError) as error:
        run(dataset, max_identities=1)
    message = str(error.value)
    assert "at least two identities" in message and "split.max_identities" in message, message
    assert "['Alice Doe']" in message, f"the message says what was left: {message}"


def test_identity_without_training_image_is_an_error():
    from facerec.split import require_training_images

    known = pd.DataFrame({"identity": ["alice", "alice", "bob", "bob"]})
    assigned = pd.Series(["train", "val", "val", "test"])
    with pytest.raises(PipelineInputError, match=r"\['bob'\] without a training image"):
        require_training_images(known, assigned)


def test_dataset_without_two_usable_identities_says_why():
    manifest = pd.DataFrame({
        "path": [f"s{person}/{index}.pgm" for person in (1, 2) for index in range(5)],
        "identity": [f"s{person}" for person in (1, 2) for _ in range(5)],
        "sha256": [f"{index:064x}" for index in range(10)],
        "status": ["unsupported_format"] * 10,
    })
    with pytest.raises(PipelineInputError) as error:
        split_manifest(manifest, Path("unused"), BASE, SEED, fingerprints=random_fingerprints(10))
    message = str(error.value)
    assert "{'unsupported_format': 10}" in message and "download.source" in message, message


def manifest_with_copies() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two identities of 20 images each, 8 of the first identity's files being one picture."""
    manifest, fingerprints = synthetic_manifest({"a": 20, "b": 20})
    copies = manifest.index[:8]
    fingerprints.loc[copies] = fingerprints.loc[[copies[0]] * len(copies)].to_numpy()
    return manifest, fingerprints


def test_random_strategy_splits_images_one_by_one_and_reports_the_leak():
    manifest, fingerprints = manifest_with_copies()
    grouped = split_manifest(manifest, Path("unused"), BASE, SEED, fingerprints=fingerprints)
    spread = split_manifest(manifest, Path("unused"), replace(BASE, strategy="random"), SEED, fingerprints=fingerprints)
    copies = set(manifest["path"][:8])
    assert len({split_of(grouped)[path] for path in copies}) == 1, "grouped keeps the 8 copies in one split"
    assert len({split_of(spread)[path] for path in copies}) > 1, "random ignores duplicates and spreads them"
    assert set(split_of(grouped)) == set(split_of(spread)), "both strategies split the same images"
    for name, fraction in (("val", BASE.val_fraction), ("test", BASE.test_fraction)):
        counts = spread.splits[name]["identity"].value_counts().to_dict()
        assert counts == {"a": round(20 * fraction), "b": round(20 * fraction)}, f"random is stratified: {name} {counts}"
    assert grouped.report["groups_in_several_splits"] == 0, "grouped: no group spans splits"
    assert grouped.report["near_pairs_across_splits"] == 0, "grouped: no near pair spans splits"
    assert spread.report["groups_in_several_splits"] == 1, "random: the copies' group is counted as leaking"
    per_split = pd.Series([split_of(spread)[path] for path in copies]).value_counts()
    same_split_pairs = sum(count * (count - 1) // 2 for count in per_split)
    assert spread.report["near_pairs_across_splits"] == 28 - same_split_pairs, (
        f"random: each of the 28 copy pairs whose images sit in two splits is counted ({per_split.to_dict()})")
