"""Predict CLI on images the test writes: top-k, folders, bad files, thresholds and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import facerec.predict
from facerec.open_set import model_digest
from facerec.predict import main


@pytest.fixture()
def loaded_once(classifier, monkeypatch):
    """Skip main()'s model loading (seconds each); test_folder_recursively… covers the real one."""
    monkeypatch.setattr("facerec.predict.load_classifier", lambda path: classifier)
    return classifier


@pytest.fixture()
def images(project, synthetic_root, tmp_path) -> Path:
    """A folder tree with three test images (one nested, one PNG), a corrupt .jpg and a notes file."""
    from PIL import Image

    test_paths = [line.split(",")[0] for line in (project / "splits/test.csv").read_text().splitlines()[1:4]]
    (tmp_path / "photos/nested").mkdir(parents=True)
    shutil.copy(synthetic_root / test_paths[0], tmp_path / "photos/a.jpg")
    shutil.copy(synthetic_root / test_paths[1], tmp_path / "photos/nested/b.jpg")
    with Image.open(synthetic_root / test_paths[2]) as image:
        image.save(tmp_path / "photos/nested/c.png")
    (tmp_path / "photos/broken.jpg").write_bytes(b"not really a jpeg")
    (tmp_path / "photos/notes.txt").write_text("skipped inside folders", encoding="utf-8")
    return tmp_path / "photos"


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])  # callers pass --no-detect: synthetic crops hold no real face
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_folder_recursively_with_a_bad_file(project, images, capsys, tmp_path):
    status, out, err = run(capsys, "--no-detect", images, "--model", project / "models/model.keras", "--top-k", "2",
                           "--threshold-file", tmp_path / "absent.json")
    lines = out.strip().splitlines()
    assert status == 0, "images were identified, so the run succeeds despite the broken file"
    assert len(lines) == 3 and any("nested/c.png" in line for line in lines), "nested images, JPEG and PNG"
    assert all(line.count(",") == 1 for line in lines), "two identities listed per image (--top-k 2)"
    assert "broken.jpg" in err and "error" in err, "the corrupt file gets its own error line"
    assert "notes.txt" not in out + err, "non-image files inside folders are not attempted"


def test_json_matches_evaluate_probabilities(project, images, synthetic_root, capsys, tmp_path, loaded_once):
    from facerec.manifests import load_split
    from facerec.predict import predict_frame

    status, out, _ = run(capsys, "--no-detect", images / "a.jpg", "--model", project / "models/model.keras", "--json",
                         "--top-k", "3", "--threshold-file", tmp_path / "absent.json")
    result = json.loads(out)[0]
    classifier = loaded_once
    expected, _ = predict_frame(classifier, load_split(project / "splits/test.csv").head(1), synthetic_root, 8)
    got = {item["identity"]: item["probability"] for item in result["top_k"]}
    want = {name: round(float(p), 5) for name, p in zip(classifier.labels, expected[0], strict=True)}
    assert status == 0 and got == pytest.approx(want, abs=1e-4), "CLI preprocesses exactly like evaluate/training"
    assert result["prediction"] == classifier.labels[int(np.argmax(expected[0]))], "no threshold: the top identity"


def test_threshold_file_applies_only_to_its_model(project, images, capsys, tmp_path, loaded_once):
    model = project / "models/model.keras"
    record = {"score": "max_softmax", "threshold": 1.5, "model_sha256": model_digest(model)}
    (tmp_path / "open_set.json").write_text(json.dumps(record), encoding="utf-8")
    status, out, _ = run(capsys, "--no-detect", images / "a.jpg", "--model", model, "--threshold-file", tmp_path / "open_set.json")
    assert status == 0 and "\tunknown (" in out, "a probability can never reach 1.5: the face is unknown"
    _, out, _ = run(capsys, "--no-detect", images / "a.jpg", "--model", model, "--threshold-file", tmp_path / "open_set.json",
                    "--score", "max_logit")
    assert "unknown" not in out, "a probability threshold is never compared with logits"
    (tmp_path / "open_set.json").write_text(json.dumps(record | {"model_sha256": "0" * 64}), encoding="utf-8")
    _, out, _ = run(capsys, "--no-detect", images / "a.jpg", "--model", model, "--threshold-file", tmp_path / "open_set.json")
    assert "unknown" not in out, "a threshold chosen for other weights is ignored"
    _, out, _ = run(capsys, "--no-detect", images / "a.jpg", "--model", model, "--threshold", "0",
                    "--threshold-file", tmp_path / "open_set.json")
    assert "unknown" not in out, "--threshold 0 turns rejection off"


def test_nothing_predictable_exits_non_zero(project, images, capsys, loaded_once):
    status, out, err = run(capsys, "--no-detect", images / "broken.jpg", images / "notes.txt", images / "missing.jpg",
                           "--model", project / "models/model.keras")
    assert status == 1 and not out.strip(), "no image could be identified"
    assert err.count("error:") == 3 and "not found" in err, "one error line per file, saying why"


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0, "--help exits cleanly"
    for option in ("--model", "--top-k", "--threshold", "--json", "Exit status", "unknown"):
        assert option in text, f"--help mentions {option}"


def test_damaged_model_or_missing_labels_exit_2_with_a_clear_error(project, images, capsys, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(project / "models/model.keras", models / "model.keras")
    status, out, err = run(capsys, images / "a.jpg", "--model", models / "model.keras")
    assert status == 2 and "labels.json is missing" in err and "Traceback" not in err, \
        "a model without its labels.json is a setup error (2), not 'no image identified' (1)"
    (models / "labels.json").write_text(json.dumps(["only", "two"]), encoding="utf-8")
    status, _, err = run(capsys, images / "a.jpg", "--model", models / "model.keras")
    assert status == 2 and "names 2 identities" in err, "labels from another run are caught, not mislabelled output"
    (models / "model.keras").write_bytes((project / "models/model.keras").read_bytes()[:5000])
    status, out, err = run(capsys, images / "a.jpg", "--model", models / "model.keras")
    assert status == 2 and "is not a loadable facerec model" in err and str(models / "model.keras") in err, \
        "a truncated model file names the file and the fix, exit 2"
    assert "Traceback" not in err and not out.strip(), "no traceback and no results"
    status, _, err = run(capsys, images / "a.jpg", "--model", tmp_path / "absent/model.keras")
    assert status == 2 and "no model at" in err, "a missing model is a setup error too"


def test_a_huge_non_image_named_jpg_is_rejected_from_its_header(project, images, capsys, tmp_path, loaded_once,
                                                               monkeypatch):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:  # sparse: 1.5 GB long, no disk used
        handle.write(b"PK\x03\x04 not an image")
        handle.truncate(1_500_000_000)
    decoded = []
    real_decode = facerec.predict.decode_and_resize
    monkeypatch.setattr(facerec.predict, "decode_and_resize",
                        lambda path, size: (decoded.append(path.numpy().decode()), real_decode(path, size))[1])
    status, out, err = run(capsys, "--no-detect", huge, images / "a.jpg", "--model", project / "models/model.keras")
    assert status == 0 and "huge.jpg\terror: not a readable" in err, "the non-image gets an error line"
    assert decoded == [str(images / "a.jpg")], "only the real image reaches the decoder (which reads files whole)"
