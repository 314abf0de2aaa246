"""predict on photos: every face detected, aligned as the training crops were, and identified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from real_faces import GROUP_FACE_COLUMNS, grace_hopper, group_photo, no_face_photo
from trained_model import trained_project

from conftest import PROJECT_ROOT
from facerec.config import FacesConfig, read_params
from facerec.predict import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, synthetic_root) -> Path:
    """The tiny trained model with a model card holding the faces settings, as the train stage writes it."""
    project = trained_project(tmp_path_factory, synthetic_root)
    models = tmp_path_factory.mktemp("photo_model") / "models"
    shutil.copytree(project / "models", models)
    faces = {**read_params(PROJECT_ROOT / "params.yaml")["faces"], "detector": "mtcnn"}  # trained on aligned crops
    (models / "model_card.json").write_text(json.dumps({"faces": faces}), encoding="utf-8")
    return models


@pytest.fixture(scope="module")
def loaded(model_dir):
    """The model and its face finder, built once (seconds each); the last test covers main()'s own loading."""
    from facerec.photo_faces import FaceFinder
    from facerec.predict import load_classifier

    return load_classifier(model_dir / "model.keras"), FaceFinder.for_model(model_dir / "model.keras")


@pytest.fixture()
def loaded_once(loaded, monkeypatch):
    classifier, finder = loaded
    monkeypatch.setattr("facerec.predict.load_classifier", lambda path: classifier)
    monkeypatch.setattr("facerec.photo_faces.FaceFinder.for_model", classmethod(lambda cls, path: finder))
    return loaded


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(group_photo()).save(folder / "group.jpg", quality=92)
    Image.fromarray(grace_hopper()).save(folder / "hopper.png")
    Image.fromarray(no_face_photo()).save(folder / "landscape.jpg", quality=92)
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_every_face_of_a_group_photo_gets_a_box_and_a_name(model_dir, photos, capsys, tmp_path, loaded_once):
    status, out, err = run(capsys, photos, "--model", model_dir / "model.keras", "--json", "--top-k", "2",
                           "--threshold-file", tmp_path / "absent.json", "--annotate", tmp_path / "drawn")
    assert status == 0, f"faces were identified: {err}"
    results = {Path(result["path"]).name: result for result in json.loads(out)}
    labels = json.loads((model_dir / "labels.json").read_text(encoding="utf-8"))
    group = results["group.jpg"]["faces"]
    assert len(group) == 3, f"three faces were composed into the group photo, got {len(group)}"
    centres = sorted(face["box"][0] + face["box"][2] / 2 for face in group)
    for centre, (left, right) in zip(centres, GROUP_FACE_COLUMNS):
        assert left < centre < right, f"box centre x={centre} in the original photo's pixels lies in {left}–{right}"
    for face in group + results["hopper.png"]["faces"]:
        assert len(face["box"]) == 4 and all(isinstance(value, int) for value in face["box"]), "box [x, y, w, h]"
        assert face["detection_confidence"] >= 0.9, "only faces the model's min_confidence accepts are reported"
        assert face["prediction"] in labels + ["unknown"] and len(face["top_k"]) == 2, "an identity per face"
        assert 0.0 <= face["score"] <= 1.0, "max_softmax score"
    assert results["landscape.jpg"]["faces"] == [], "a photo without a face gets no invented label"
    assert "landscape.jpg\tno face found" in err, "and a line on stderr says so"
    drawn = tmp_path / "drawn" / "group.png"
    with Image.open(drawn) as image:
        assert image.format == "PNG" and image.size == (1500, 640), "an annotated PNG copy at the photo's size"
        assert not np.array_equal(np.asarray(image.convert("RGB")), group_photo()), "boxes and names drawn on it"
    assert sorted(path.name for path in (tmp_path / "drawn").iterdir()) == [
        "group.png", "hopper.png", "landscape.png"], "one annotated copy per photo"


def test_a_face_is_classified_exactly_as_its_training_crop(model_dir, photos, capsys, tmp_path, loaded_once):
    # The faces stage's crop of a PNG photo is a lossless PNG, read by the training input pipeline;
    # predict's crop of the same photo must give the model the same pixels.
    from facerec.predict import predict_frame
    from stages.faces import detect_and_align

    config = FacesConfig.from_params(json.loads((model_dir / "model_card.json").read_text())["faces"])
    images = pd.DataFrame({"path": ["hopper.png"], "identity": ["x"]})
    faces = detect_and_align(images, photos, tmp_path / "crops", config)
    assert faces["status"].tolist() == ["ok"], "the faces stage keeps Grace Hopper's face"
    classifier = loaded_once[0]
    labels = classifier.labels
    expected, _ = predict_frame(classifier, images.assign(identity=labels[0]), tmp_path / "crops", 8)
    status, out, _ = run(capsys, photos / "hopper.png", "--model", model_dir / "model.keras", "--json",
                         "--top-k", str(len(labels)), "--threshold", "0")
    face = json.loads(out)[0]["faces"][0]
    got = {item["identity"]: item["probability"] for item in face["top_k"]}
    want = {name: round(float(value), 5) for name, value in zip(labels, expected[0])}
    assert status == 0 and got == pytest.approx(want, abs=2e-3), "predict aligns and resizes like training"


def test_text_output_lists_each_face(model_dir, photos, capsys, tmp_path, loaded_once):
    status, out, _ = run(capsys, photos / "group.jpg", "--model", model_dir / "model.keras",
                         "--threshold-file", tmp_path / "absent.json")
    lines = out.strip().splitlines()
    assert status == 0 and len(lines) == 3, f"one line per face: {lines}"
    assert all("\tface " in line and " at [" in line for line in lines), "each line says which face and where"


def test_only_photos_without_faces_exit_non_zero(model_dir, photos, capsys, tmp_path):
    # main() loads the model and builds the detector itself here.
    status, out, err = run(capsys, photos / "landscape.jpg", "--model", model_dir / "model.keras", "--json")
    assert status == 1 and json.loads(out) == [{"path": str(photos / "landscape.jpg"), "faces": []}], (
        "nothing identified: exit 1, an empty faces list")
    assert "--no-detect" in err, "the stderr line points at --no-detect for inputs that are crops"


def test_a_model_without_faces_settings_is_refused_with_the_fix(synthetic_root, tmp_path_factory, photos, capsys):
    project = trained_project(tmp_path_factory, synthetic_root)
    status, _, err = run(capsys, photos / "hopper.png", "--model", project / "models/model.keras")
    assert status == 2 and "--no-detect" in err and "retrain" in err, f"the error names both fixes: {err}"


def test_no_detect_and_annotate_together_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["x.jpg", "--no-detect", "--annotate", "out"])
    assert exit_info.value.code == 2, "argparse usage error"


def test_help_says_when_to_detect_and_when_not(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for phrase in ("--no-detect", "--annotate", "already face", "group photos", "detection_confidence"):
        assert phrase in text, f"--help mentions {phrase}"


def test_a_model_trained_on_the_datasets_own_crops_gets_the_face_box_not_an_aligned_crop():
    from facerec.data import resize_square
    from facerec.faces import Face
    from facerec.photo_faces import FaceFinder

    settings = {**read_params(PROJECT_ROOT / "params.yaml")["faces"], "detector": "none", "margin_fraction": 0.1}
    photo = np.arange(200 * 300 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8)
    face = Face(box=(100.0, 50.0, 60.0, 80.0), landmarks=np.zeros((5, 2)), confidence=0.99)
    [crop] = FaceFinder(FacesConfig.from_params(settings)).crops(photo, [face], 32)
    expected = resize_square(photo[42:138, 94:166], 32).numpy()  # the box widened by 10 % on every side
    assert np.array_equal(crop, expected), "an unrotated box crop, as the dataset's own crops are framed"
