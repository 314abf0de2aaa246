"""Identify faces in photos with the trained model: top-k identities, or `unknown`.

Shared with the evaluate stage: loading the saved model and running it over a split, so the
stage and this CLI cannot disagree on preprocessing (it lives in the model and in
facerec.data.decode_and_resize, exactly as in training).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

import facerec.model  # registers the custom layers safe_mode needs (imported for that alone)
import facerec.training  # noqa: F401  registers the label-smoothing loss
from facerec.data import decode_and_resize, make_dataset
from facerec.errors import PipelineInputError
from facerec.gallery import GalleryError, describe_match, l2_normalise, read_gallery
from facerec.open_set import SCORES, known_score, model_digest, read_threshold

log = logging.getLogger("facerec.predict")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}  # what tf.io.decode_image reads
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # the same formats, as Pillow names them
CHUNK_IMAGES = 256  # decoded images held in memory at once


@dataclass(frozen=True)
class Classifier:
    """A loaded model, a view of it that also returns the logits, and its identity names."""

    model: keras.Model
    network: keras.Model  # built once: every new keras.Model retraces its predict function
    labels: list[str]

    @property
    def image_size_px(self) -> int:
        return self.model.input_shape[1]

    def predict(self, inputs, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, logits); logits are the final Dense layer's output before its softmax."""
        return self.predict_with_features(inputs, batch_size)[:2]

    def predict_with_features(self, inputs, batch_size: int | None = None) -> tuple[np.ndarray, ...]:
        """(probabilities, logits, features); features are the head's output that the final Dense layer reads."""
        probabilities, features = self.network.predict(inputs, batch_size=batch_size, verbose=0)
        features = features.astype(np.float32)
        kernel, bias = self.model.get_layer("identity").get_weights()
        return probabilities, features @ kernel + bias, features


def load_classifier(model_path: Path) -> Classifier:
    """The saved model (safe_mode=True) with the labels.json written next to it."""
    labels_path = Path(model_path).parent / "labels.json"
    fix = "rerun `dvc repro train` (or `dvc checkout models`) or pass --model"
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PipelineInputError(f"{labels_path} is missing: the model's identity names live there; {fix}") from error
    except (OSError, ValueError) as error:
        raise PipelineInputError(f"{labels_path} is not a readable JSON list of names ({error}); {fix}") from error
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise PipelineInputError(f"{labels_path} must hold a JSON list of identity names; {fix}")
    try:
        model = keras.models.load_model(model_path, safe_mode=True)
        network = keras.Model(model.inputs, [model.output, model.get_layer("identity").input])
    except Exception as error:  # Keras reports a damaged archive with many types (zip, h5, JSON, config)
        raise PipelineInputError(f"{model_path} is not a loadable facerec model ({type(error).__name__}: "
                                 f"{str(error)[:200]}); {fix}") from error
    if model.output_shape[-1] != len(labels):
        raise PipelineInputError(f"{labels_path} names {len(labels)} identities but {model_path} predicts "
                                 f"{model.output_shape[-1]}; the two come from different runs; {fix}")
    return Classifier(model, network, labels)


def header_problem(path: Path) -> str | None:
    """Why `path` is not an image tf.io.decode_image can read, judged from its header alone; None if it is.

    Pillow only reads the first bytes to identify a format, so a huge file of another kind is
    rejected without being read into memory the way tf.io.read_file would.
    """
    try:
        with Image.open(path, formats=DECODABLE_FORMATS):
            pass  # identified from the header; pixels are never loaded here
    except (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as error:
        if isinstance(error, Image.DecompressionBombError):
            return "too many pixels to decode safely"
        return "not a readable JPEG/PNG/GIF/BMP/WebP image (unrecognised header)"
    except OSError as error:
        return f"unreadable ({error.strerror or type(error).__name__})"
    return None


def predict_frame(classifier: Classifier, frame: pd.DataFrame, images_at: Path, batch_size: int):
    """(probabilities, logits) for every row of a split manifest, in its order (never shuffled)."""
    return predict_frame_with_features(classifier, frame, images_at, batch_size)[:2]


def predict_frame_with_features(classifier: Classifier, frame: pd.DataFrame, images_at: Path, batch_size: int):
    """(probabilities, logits, features) for every row of a split manifest, in its order."""
    labels = classifier.labels
    if frame.empty:
        width = classifier.network.outputs[1].shape[-1]
        return (np.zeros((0, len(labels)), np.float32), np.zeros((0, len(labels)), np.float32),
                np.zeros((0, width), np.float32))
    # make_dataset needs a known label per row; unknown-identity rows get a placeholder that is
    # dropped below, so every split goes through the one input pipeline training used.
    known = frame["identity"].isin(labels)
    frame = frame.assign(identity=frame["identity"].where(known, labels[0]))
    dataset = make_dataset(frame, images_at, labels, image_size_px=classifier.image_size_px, batch_size=batch_size,
                           shuffle=False, seed=0)
    return classifier.predict_with_features(dataset.map(lambda images, _: images))


def collect_files(paths: list[Path]) -> list[Path]:
    """Files named explicitly, plus image files found recursively in named folders, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                                and not p.name.startswith(".")))
        else:
            found.append(path)
    return found


def decode_files(files: list[Path], image_size_px: int) -> tuple[list[Path], list[np.ndarray], list[tuple]]:
    """Decode each file alone, so one bad file costs an error line instead of the whole batch."""
    decoded_paths, images, errors = [], [], []
    for path in files:
        if not path.is_file():
            errors.append((path, "not found" if not path.exists() else "not a file"))
            continue
        problem = header_problem(path)
        if problem:
            errors.append((path, problem))
            continue
        try:
            images.append(decode_and_resize(tf.constant(str(path)), image_size_px).numpy())
            decoded_paths.append(path)
        except (tf.errors.OpError, ValueError) as error:
            errors.append((path, f"not a readable JPEG/PNG/GIF/BMP/WebP image ({type(error).__name__})"))
    return decoded_paths, images, errors


def describe(path, probabilities, logits, labels, top_k, threshold, score_name) -> dict:
    """One file's result: top-k identities and whether the best one clears the threshold."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    score = float(known_score(probabilities[None], logits[None], score_name)[0])
    accepted = threshold is None or score >= threshold
    return {"path": str(path), "prediction": labels[order[0]] if accepted else "unknown", "score": score,
            "score_name": score_name, "threshold": threshold,
            "top_k": [{"identity": labels[i], "probability": round(float(probabilities[i]), 5)} for i in order]}


def format_line(result: dict) -> str:
    """Human-readable one-line summary of a file's result."""
    ranked = ", ".join(f"{item['identity']} {item.get('probability', item.get('cosine')):.3f}"
                       for item in result["top_k"])
    if result["prediction"] == "unknown":
        return (f"{result['path']}\tunknown ({result['score_name']} {result['score']:.3f} < threshold "
                f"{result['threshold']:.3f}); nearest: {ranked}")
    return f"{result['path']}\t{ranked}"


def resolve_threshold(args, model_path: Path) -> tuple[float | None, str]:
    """Threshold and score from --threshold/--score, else from evaluate's threshold file."""
    stored = read_threshold(args.threshold_file, model_path) if args.threshold is None else None
    if stored is not None and args.score not in (None, stored["score"]):
        # A threshold on probabilities means nothing for logits (and vice versa).
        log.warning("%s holds a %s threshold, not %s; no rejection (pass --threshold)", args.threshold_file,
                    stored["score"], args.score)
        stored = None
    if stored is not None:
        return stored["threshold"], stored["score"]
    threshold = args.threshold if args.threshold else None  # --threshold 0 turns rejection off
    return threshold, args.score or "max_softmax"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerec.predict", description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Photos or crops:\n"
               "  By default every face in each image is detected (MTCNN), aligned the way the model's training\n"
               "  images were (the faces settings in its model card) and identified: use this for photos of\n"
               "  people, group photos, full-size portraits. An image without a face gets no label (an empty\n"
               "  `faces` list and a line on stderr).\n"
               "  --no-detect classifies each whole image as it is: use it for inputs that are already face\n"
               "  crops like the training images (e.g. Pins crops with faces.detector: none).\n\n"
               "Exit status: 0 when at least one face (or, with --no-detect, one image) was identified, 1 when\n"
               "none was, 2 on bad arguments or a missing/damaged model, labels.json or model card. Unreadable\n"
               "or non-image files get an error line on stderr and are skipped.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="image files (JPEG/PNG/GIF/BMP/WebP) or folders, searched recursively for images")
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"),
                        help="saved model; labels.json must sit next to it (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=5, help="identities listed per image (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="report `unknown` when the image's score is below this; 0 turns rejection off. "
                             "Default: the threshold the evaluate stage chose on validation data, read from "
                             "--threshold-file if it was computed for this very model, else no rejection")
    parser.add_argument("--threshold-file", type=Path, default=Path("reports/open_set.json"),
                        help="evaluate's open-set threshold file (default: %(default)s)")
    parser.add_argument("--score", choices=SCORES, default=None,
                        help="known-face score compared with the threshold: max_softmax = top probability, "
                             "max_logit = top pre-softmax output. Default: the threshold file's, else max_softmax; "
                             "a threshold file for another score is not applied")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--gallery", type=Path, default=None,
                        help="a gallery made by `python -m facerec.enroll`: rank enrolled people and trained "
                             "identities together by cosine similarity, with the gallery's unknown-face threshold "
                             "(--threshold overrides it; --score and --threshold-file do not apply)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON list of results instead of text lines: per image a `faces` list "
                             "(box [x, y, width, height] in the image's pixels, detection_confidence, prediction, "
                             "score, top_k), or with --no-detect one prediction per image")
    parser.add_argument("--no-detect", action="store_true",
                        help="classify each whole image (inputs that are already face crops) instead of the faces "
                             "found in it")
    parser.add_argument("--annotate", type=Path, metavar="DIR",
                        help="write a PNG copy of each photo into DIR with every face's box and name drawn")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    if args.no_detect and args.annotate:
        parser.error("--annotate draws detected faces; it cannot be combined with --no-detect")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.model.is_file():
        print(f"error: no model at {args.model}; run `dvc repro train` or pass --model", file=sys.stderr)
        return 2
    if args.gallery is not None:
        try:
            gallery = read_gallery(args.gallery, model_digest(args.model))
        except GalleryError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        classifier = load_classifier(args.model)
    except PipelineInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.gallery is None:
        threshold, score_name = resolve_threshold(args, args.model)

        def name(path, probabilities, logits, features) -> dict:
            return describe(path, probabilities, logits, classifier.labels, args.top_k, threshold, score_name)
    else:
        # --threshold 0 turns rejection off; cosines reach down to -1.
        threshold = gallery.cosine_threshold if args.threshold is None else (args.threshold or -1.0)
        view = gallery.prototypes()

        def name(path, probabilities, logits, features) -> dict:
            return describe_match(path, l2_normalise(features[None])[0], view, args.top_k, threshold)
    files = collect_files(args.paths)
    if args.no_detect:
        results = classify_whole_images(classifier, files, args.batch_size, name)
    else:
        # Imported here: the evaluate stage imports this module and needs no detector.
        from facerec.photo_faces import FaceFinder, classify_faces

        try:
            finder = FaceFinder.for_model(args.model)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        results = classify_faces(classifier, finder, files, args.batch_size, name, annotate_dir=args.annotate)
    for result in results:
        if "error" in result:
            print(f"{result['path']}\terror: {result['error']}", file=sys.stderr)
        elif result.get("faces") == []:
            print(f"{result['path']}\tno face found; if the image is already a face crop, pass --no-detect",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    else:
        for result in results:
            for line in text_lines(result):
                print(line)
    if not files:
        print("error: no image files found in the given paths", file=sys.stderr)
    identified = [result for result in results if result.get("faces") or ("prediction" in result)]
    return 0 if identified else 1


def classify_whole_images(classifier: Classifier, files: list[Path], batch_size: int, name) -> list[dict]:
    """One result per file: the whole image resized to the model's input (inputs that are crops already).

    `name(path, probabilities, logits, features)` turns one image's outputs into its result.
    """
    results: list[dict] = []
    for start in range(0, len(files), CHUNK_IMAGES):
        decoded, images, errors = decode_files(files[start:start + CHUNK_IMAGES], classifier.image_size_px)
        results.extend({"path": str(path), "error": reason} for path, reason in errors)
        if images:
            probabilities, logits, features = classifier.predict_with_features(np.stack(images), batch_size)
            results.extend(name(path, probabilities[row], logits[row], features[row])
                           for row, path in enumerate(decoded))
    return results


def text_lines(result: dict) -> list[str]:
    """stdout lines of one file's result: one per face (where it is, then its identities), or per image."""
    if "error" in result:
        return []
    if "faces" not in result:
        return [format_line(result)]
    return [format_line({**face, "path": f"{result['path']}\tface {number} at {face['box']}"})
            for number, face in enumerate(result["faces"], start=1)]


if __name__ == "__main__":
    sys.exit(main())
