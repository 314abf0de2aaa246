"""Embeddings, the gallery file format, `facerec.enroll` and `facerec.predict --gallery`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facerec.gallery import (
    Gallery,
    GalleryError,
    centroid,
    known_gallery,
    leave_one_out_scores,
    read_gallery,
    write_gallery,
)


@pytest.fixture(scope="module")
def known_dir(project, classifier, synthetic_root, tmp_path_factory) -> Path:
    """The trained identities' gallery as the evaluate stage builds it, from the val split."""
    from facerec.data import label_ids
    from facerec.embed import embed_frame
    from facerec.manifests import load_split
    from facerec.open_set import model_digest

    val = load_split(project / "splits/val.csv")
    embeddings = embed_frame(classifier, val, synthetic_root, 8)
    gallery = known_gallery(embeddings, label_ids(val["identity"], classifier.labels), classifier.labels, 0.9,
                            model_digest(project / "models/model.keras"))
    directory = tmp_path_factory.mktemp("known") / "known_gallery"
    write_gallery(directory, gallery)
    return directory


@pytest.fixture()
def loaded_once(classifier, monkeypatch):
    """Skip the CLIs' model loading (seconds each)."""
    monkeypatch.setattr("facerec.predict.load_classifier", lambda path: classifier)
    return classifier


@pytest.fixture()
def people(project, synthetic_root, tmp_path) -> Path:
    """The held-out identity enrolled as 'Zed' from one photo, and a person whose only photo is broken."""
    from facerec.manifests import load_split

    unknown = load_split(project / "splits/unknown.csv")
    (tmp_path / "people/Zed").mkdir(parents=True)
    shutil.copy(synthetic_root / unknown["path"][0], tmp_path / "people/Zed/first.jpg")
    (tmp_path / "people/Broken").mkdir()
    (tmp_path / "people/Broken/face.jpg").write_bytes(b"not a jpeg")
    return tmp_path / "people"


def test_embeddings_are_unit_length_head_features(classifier, project, synthetic_root):
    from facerec.embed import embed_frame
    from facerec.manifests import load_split

    frame = load_split(project / "splits/test.csv").head(4)
    embeddings = embed_frame(classifier, frame, synthetic_root, 4)
    head_width = classifier.model.get_layer("identity").input.shape[-1]
    assert embeddings.shape == (4, head_width), "one embedding per image, as wide as the head's features"
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5), "embeddings are L2-normalised"


def test_leave_one_out_scores_exclude_the_photo_itself():
    embeddings = np.array([[1, 0], [0.6, 0.8], [0, 1], [0, 1]], np.float32)
    scores = leave_one_out_scores(embeddings, np.array([0, 0, 1, 2]), 3)
    assert scores[0] == pytest.approx(0.6, abs=1e-6), "photo 0 is scored against photo 1 alone, not its own mean"
    assert np.isnan(scores[2]) and np.isnan(scores[3]), "a photo alone in its identity has no honest score"
    assert centroid(embeddings[:2]) == pytest.approx(np.array([0.8, 0.4]) / np.hypot(0.8, 0.4)), "unit mean"


def test_known_gallery_threshold_accepts_the_asked_share():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    gallery = known_gallery(embeddings, np.repeat(np.arange(6), 10), [f"p{i}" for i in range(6)], 0.9, "a" * 64)
    assert gallery.threshold["val_known_acceptance"] >= 0.9, "at least 90 % of known val photos pass the threshold"
    assert gallery.known_centroids.shape == (6, 8) and gallery.threshold["n_val"] == 60, "one centroid per identity"


def test_gallery_round_trip_and_refusals(tmp_path):
    gallery = Gallery("a" * 64, {"cosine": 0.5}, ("Ann", "Bob"), np.eye(2, 3, dtype=np.float32))
    gallery = gallery.with_person("Cy", np.array([[0, 0, 1]], np.float32), ["cy.jpg"])
    write_gallery(tmp_path / "g", gallery)
    loaded = read_gallery(tmp_path / "g", "a" * 64)
    names, prototypes, enrolled = loaded.prototypes()
    assert names == ["Ann", "Bob", "Cy"] and enrolled.tolist() == [False, False, True], "one list, enrolled last"
    assert np.allclose(prototypes[2], [0, 0, 1]), "enrolled centroid stored and reloaded"
    with pytest.raises(GalleryError, match="another model"):
        read_gallery(tmp_path / "g", "b" * 64)
    with pytest.raises(GalleryError, match="trained identities"):
        gallery.with_person("Ann", np.ones((1, 3), np.float32), ["x.jpg"])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/todo.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(GalleryError, match="not a gallery"):
        write_gallery(tmp_path / "notes", gallery)
    assert (tmp_path / "notes/todo.txt").is_file(), "a folder that is not a gallery is never replaced"


def run_cli(module_main, capsys, *argv) -> tuple[int, str, str]:
    status = module_main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_enrol_list_predict_remove(project, known_dir, people, tmp_path, capsys, loaded_once):
    from facerec.enroll import main as enroll
    from facerec.predict import main as predict

    model = project / "models/model.keras"
    gallery = tmp_path / "gallery"
    status, _, err = run_cli(enroll, capsys, people, "--gallery", gallery, "--model", model, "--known", known_dir, "--no-detect")
    assert status == 0, f"one person could be enrolled: {err}"
    assert "Broken" in err and "not enrolled" in err, "a person without readable photos is named on stderr"
    record = json.loads((gallery / "gallery.json").read_text(encoding="utf-8"))
    assert [person["name"] for person in record["enrolled"]] == ["Zed"], "only the readable person is enrolled"
    assert record["threshold"]["cosine"] == read_gallery(known_dir).cosine_threshold, "val threshold recorded"

    # --no-detect: the synthetic photos are crops without a real face for the detector
    status, out, _ = run_cli(predict, capsys, people / "Zed/first.jpg", "--no-detect", "--model", model,
                             "--gallery", gallery, "--json", "--top-k", "3", "--no-detect")
    result = json.loads(out)[0]
    assert status == 0 and result["prediction"] == "Zed", "the enrolment photo itself is recognised as Zed"
    assert result["top_k"][0]["cosine"] == pytest.approx(1.0, abs=1e-4), "same photo: cosine 1"
    assert [item["enrolled"] for item in result["top_k"]].count(False) == 2, "trained identities in the same list"
    _, out, _ = run_cli(predict, capsys, people / "Zed/first.jpg", "--no-detect", "--model", model,
                        "--gallery", gallery, "--threshold", "1.5")
    assert "\tunknown (cosine" in out, "no cosine reaches 1.5: the face is reported unknown, saying why"

    shutil.copy(people / "Zed/first.jpg", people / "Zed/second.jpg")
    run_cli(enroll, capsys, people, "--gallery", gallery, "--model", model, "--known", known_dir, "--no-detect")
    status, out, _ = run_cli(enroll, capsys, "--list", "--gallery", gallery, "--model", model)
    assert status == 0 and "Zed\t2 photos" in out, "enrolling again replaces the person's photos (1 → 2)"
    status, out, _ = run_cli(enroll, capsys, "--remove", "Zed", "--list", "--gallery", gallery, "--model", model)
    assert status == 0 and "Zed" not in out.splitlines()[0] and "0 enrolled" in out, "--remove deletes the person"


def test_gallery_of_another_model_is_refused(project, known_dir, people, tmp_path, capsys):
    from facerec.enroll import main as enroll
    from facerec.predict import main as predict

    other_model = tmp_path / "other/model.keras"
    other_model.parent.mkdir()
    other_model.write_bytes((project / "models/model.keras").read_bytes() + b"\0")  # another file, another digest
    shutil.copy(project / "models/labels.json", other_model.parent / "labels.json")
    status, _, err = run_cli(enroll, capsys, people, "--gallery", tmp_path / "g", "--model", other_model,
                             "--known", known_dir, "--no-detect")
    assert status == 2 and "another model" in err and "Traceback" not in err, "enrol refuses, saying why"
    assert not (tmp_path / "g").exists(), "nothing written"
    status, out, err = run_cli(predict, capsys, people / "Zed/first.jpg", "--model", other_model, "--gallery",
                               known_dir, "--no-detect")
    assert status == 2 and "another model" in err and not out, "predict refuses a gallery of other weights"


def test_people_dir_without_person_folders_is_refused(project, known_dir, tmp_path, capsys, loaded_once):
    from facerec.enroll import main as enroll

    (tmp_path / "flat").mkdir()
    (tmp_path / "flat/photo.jpg").write_bytes(b"")
    status, _, err = run_cli(enroll, capsys, tmp_path / "flat", "--gallery", tmp_path / "g", "--model",
                             project / "models/model.keras", "--known", known_dir, "--no-detect")
    assert status == 2 and f"{tmp_path / 'flat'}/Ada_Lovelace" in err, "the error shows the layout to use"
    assert not (tmp_path / "g").exists(), "nothing written"


@pytest.mark.slow
def test_enrol_detects_the_face_as_predict_does(project, known_dir, tmp_path, capsys, loaded_once):
    """A whole photo: enrol and predict both detect and align its face, so the same photo matches itself."""
    import shutil as shell

    from PIL import Image
    from real_faces import grace_hopper

    from conftest import PROJECT_ROOT
    from facerec.config import read_params
    from facerec.enroll import main as enroll
    from facerec.predict import main as predict

    models = tmp_path / "models"
    shell.copytree(project / "models", models)
    faces = read_params(PROJECT_ROOT / "params.yaml")["faces"]
    (models / "model_card.json").write_text(json.dumps({"faces": faces}), encoding="utf-8")
    (tmp_path / "people/Grace").mkdir(parents=True)
    Image.fromarray(grace_hopper()).save(tmp_path / "people/Grace/portrait.png")
    status, _, err = run_cli(enroll, capsys, tmp_path / "people", "--gallery", tmp_path / "g", "--model",
                             models / "model.keras", "--known", known_dir)
    assert status == 0, f"the portrait's face was found and enrolled: {err}"
    status, out, err = run_cli(predict, capsys, tmp_path / "people/Grace/portrait.png", "--model",
                               models / "model.keras", "--gallery", tmp_path / "g", "--json", "--top-k", "2")
    face = json.loads(out)[0]["faces"][0]
    assert status == 0 and face["prediction"] == "Grace", f"predict's detected face matches the enrolled one: {err}"
    assert face["top_k"][0]["cosine"] == pytest.approx(1.0, abs=1e-3), "same face, same alignment: cosine 1"
