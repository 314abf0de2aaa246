"""Enrol new people into a gallery without retraining: one folder of photos per person."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from facerec.errors import PipelineInputError
from facerec.gallery import Gallery, read_gallery, write_gallery
from facerec.open_set import model_digest

log = logging.getLogger("facerec.enroll")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerec.enroll", description=__doc__,
        epilog="Enrolling a name again replaces its photos. A new gallery starts from --known (the trained "
               "identities and the unknown-face threshold that the evaluate stage chose on validation photos). "
               "Exit status: 0 on success, 1 when no person could be enrolled, 2 on bad arguments or a gallery "
               "made with another model.")
    parser.add_argument("people_dir", nargs="?", type=Path, metavar="PEOPLE_DIR",
                        help="one sub-folder per person (its name is the person's name) with a few face photos each")
    parser.add_argument("--gallery", type=Path, default=Path("gallery"), help="gallery folder (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"),
                        help="saved model; labels.json must sit next to it (default: %(default)s)")
    parser.add_argument("--known", type=Path, default=Path("known_gallery"),
                        help="the evaluate stage's gallery of trained identities (default: %(default)s)")
    parser.add_argument("--remove", metavar="NAME", action="append", default=[], help="remove an enrolled person")
    parser.add_argument("--list", action="store_true", help="list who is in the gallery")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--no-detect", action="store_true",
                        help="embed each photo whole (photos that are already face crops, like predict --no-detect); "
                             "by default the largest face in each photo is detected and aligned as predict does")
    args = parser.parse_args(argv)
    if args.people_dir is None and not args.remove and not args.list:
        parser.error("give PEOPLE_DIR to enrol, --remove NAME, or --list")
    if args.people_dir is not None and not args.people_dir.is_dir():
        parser.error(f"PEOPLE_DIR {args.people_dir} is not a folder; it needs one sub-folder of photos per person")
    return args


def person_folders(people_dir: Path) -> list[Path]:
    """Visible sub-folders, sorted; a folder without any is a mistake worth naming."""
    folders = sorted(path for path in people_dir.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise PipelineInputError(f"{people_dir} has no sub-folders; put each person's photos in a folder named "
                                 f"after them, e.g. {people_dir}/Ada_Lovelace/1.jpg")
    return folders


def enrol_people(gallery: Gallery, people_dir: Path, model_path: Path, batch_size: int,
                 detect: bool) -> tuple[Gallery, int]:
    """Embed each person's photos and add them; returns the new gallery and how many people it took."""
    from facerec.embed import embed_faces, embed_files  # TensorFlow loads only when there is something to embed
    from facerec.predict import collect_files, load_classifier

    folders = person_folders(people_dir)
    classifier = load_classifier(model_path)
    finder = None
    if detect:
        from facerec.photo_faces import FaceFinder

        try:
            finder = FaceFinder.for_model(model_path)
        except ValueError as error:
            raise PipelineInputError(str(error)) from error
    enrolled = 0
    for folder in folders:
        files = collect_files([folder])
        paths, embeddings, errors = (embed_faces(classifier, finder, files, batch_size) if finder
                                     else embed_files(classifier, files, batch_size))
        for path, reason in errors:
            print(f"{path}\terror: {reason}", file=sys.stderr)
        if not len(embeddings):
            print(f"{folder}\terror: no usable photos, {folder.name!r} not enrolled", file=sys.stderr)
            continue
        replaced = folder.name in gallery.enrolled
        gallery = gallery.with_person(folder.name, embeddings, [path.name for path in paths])
        enrolled += 1
        log.info("%s %s from %d photos", "re-enrolled" if replaced else "enrolled", folder.name, len(embeddings))
    return gallery, enrolled


def describe(gallery: Gallery) -> str:
    """The --list text: enrolled people with photo counts, then the trained identities' count."""
    lines = [f"{name}\t{len(gallery.enrolled[name])} photos" for name in sorted(gallery.enrolled)]
    lines.append(f"({len(gallery.enrolled)} enrolled, {len(gallery.known_labels)} trained identities; unknown below "
                 f"cosine {gallery.cosine_threshold:.3f})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load or start the gallery, apply removals and enrolments, write it once at the end."""
    if not args.model.is_file():
        raise PipelineInputError(f"no model at {args.model}; run `dvc repro train` or pass --model")
    digest = model_digest(args.model)
    exists = (args.gallery / "gallery.json").is_file()
    if not exists and not (args.known / "gallery.json").is_file():
        raise PipelineInputError(f"no gallery at {args.gallery} and no trained-identity gallery at {args.known} to "
                                 "start one from; run `dvc repro evaluate` or pass --known")
    gallery = read_gallery(args.gallery if exists else args.known, digest)
    for name in args.remove:
        gallery = gallery.without_person(name)
        log.info("removed %s", name)
    enrolled = 0
    if args.people_dir is not None:
        gallery, enrolled = enrol_people(gallery, args.people_dir, args.model, args.batch_size, not args.no_detect)
    if args.remove or enrolled:
        write_gallery(args.gallery, gallery)
        log.info("gallery %s: %d enrolled people", args.gallery, len(gallery.enrolled))
    if args.list:
        print(describe(gallery))
    return 1 if args.people_dir is not None and not enrolled else 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except PipelineInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
