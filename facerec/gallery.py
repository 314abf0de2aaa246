"""A gallery of identities as embedding centroids: the trained ones plus people enrolled later.

Every identity is the normalised mean of unit-length embeddings of photos the network did
not train on (validation photos for trained identities, a few photos for enrolled people),
so one cosine similarity ranks both kinds in one list. The gallery records the model it
was computed with and the cosine threshold below which a face counts as unknown.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facerec.atomic import atomic_dir
from facerec.errors import PipelineInputError
from facerec.open_set import choose_threshold

log = logging.getLogger(__name__)

GALLERY_JSON, EMBEDDINGS_NPZ = "gallery.json", "embeddings.npz"
FORMAT_VERSION = 1


class GalleryError(PipelineInputError):
    """A gallery that cannot be used as asked (missing, damaged, or from another model)."""


@dataclass(frozen=True)
class Gallery:
    """Trained identities' centroids, enrolled people's embeddings, the model and the threshold."""

    model_sha256: str
    threshold: dict  # cosine threshold and what it was chosen on (known_acceptance_rate, n_val, ...)
    known_labels: tuple[str, ...]
    known_centroids: np.ndarray  # (trained identities, embedding width), unit rows
    enrolled: dict[str, np.ndarray] = field(default_factory=dict)  # name → (photos, width) unit rows
    sources: dict[str, list[str]] = field(default_factory=dict)  # name → photo files it was enrolled from

    @property
    def cosine_threshold(self) -> float:
        return float(self.threshold["cosine"])

    def prototypes(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(names, unit centroids, is-enrolled flags): trained identities first, then enrolled people by name."""
        names = sorted(self.enrolled)
        matrix = np.concatenate([self.known_centroids, *[centroid(self.enrolled[name])[None] for name in names]])
        flags = np.r_[np.zeros(len(self.known_labels), bool), np.ones(len(names), bool)]
        return [*self.known_labels, *names], matrix.astype(np.float32), flags

    def with_person(self, name: str, embeddings: np.ndarray, sources: list[str]) -> Gallery:
        """A copy with `name` enrolled from these embeddings (replacing an earlier enrolment)."""
        if name in self.known_labels:
            raise GalleryError(f"{name!r} is one of the model's trained identities; enrol the person under another "
                               "name (the model already recognises this one)")
        return replace(self, enrolled={**self.enrolled, name: embeddings}, sources={**self.sources, name: sources})

    def without_person(self, name: str) -> Gallery:
        """A copy without `name`; refuses a name that is not enrolled."""
        if name not in self.enrolled:
            raise GalleryError(f"{name!r} is not enrolled in this gallery; enrolled: {sorted(self.enrolled) or 'nobody'}")
        return replace(self, enrolled={k: v for k, v in self.enrolled.items() if k != name},
                       sources={k: v for k, v in self.sources.items() if k != name})


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero instead of dividing by zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """Unit-length mean direction of unit-length embeddings."""
    mean = np.asarray(embeddings, np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def identify(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Cosine similarity of every embedding (row) with every prototype (column)."""
    return np.asarray(embeddings, np.float32) @ np.asarray(prototypes, np.float32).T


def leave_one_out_scores(embeddings: np.ndarray, identity_ids: np.ndarray, num_identities: int) -> np.ndarray:
    """Each photo's best cosine when its own identity's centroid is built without it.

    Scoring a photo against a centroid that contains the photo itself would inflate known
    faces' scores and set the unknown-face threshold too high. Photos that are alone in their
    identity have no such centroid and are left out (NaN).
    """
    sums = np.zeros((num_identities, embeddings.shape[1]), np.float64)
    np.add.at(sums, identity_ids, embeddings)
    counts = np.bincount(identity_ids, minlength=num_identities)
    centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    scores = identify(embeddings, centroids)
    own = sums[identity_ids] - embeddings
    own_score = np.einsum("ij,ij->i", embeddings, own) / np.maximum(np.linalg.norm(own, axis=1), 1e-12)
    scores[np.arange(len(identity_ids)), identity_ids] = own_score
    return np.where(counts[identity_ids] > 1, scores.max(axis=1), np.nan)


def known_gallery(val_embeddings: np.ndarray, val_ids: np.ndarray, labels: list[str], acceptance_rate: float,
                  model_sha256: str) -> Gallery:
    """The trained identities' gallery from validation photos, with the threshold chosen on them."""
    present = np.bincount(val_ids, minlength=len(labels)) > 0
    if not present.all():
        log.warning("no validation photos for %d trained identities (%s); they are left out of the gallery",
                    int((~present).sum()), ", ".join(np.asarray(labels)[~present][:5]))
    kept = np.flatnonzero(present)
    remap = np.full(len(labels), -1)
    remap[kept] = np.arange(len(kept))
    ids = remap[val_ids]
    centroids = np.stack([centroid(val_embeddings[ids == row]) for row in range(len(kept))])
    scores = leave_one_out_scores(val_embeddings, ids, len(kept))
    scores = scores[~np.isnan(scores)]
    cosine = choose_threshold(scores, acceptance_rate)
    threshold = {"cosine": round(cosine, 6), "known_acceptance_rate": acceptance_rate,
                 "val_known_acceptance": round(float(np.mean(scores >= cosine)), 5), "n_val": int(len(scores))}
    return Gallery(model_sha256, threshold, tuple(labels[i] for i in kept), centroids.astype(np.float32))


def write_gallery(directory: Path, gallery: Gallery) -> None:
    """Write gallery.json and embeddings.npz together: the folder is replaced whole or not at all."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not (directory / GALLERY_JSON).is_file():
        raise GalleryError(f"{directory} exists and is not a gallery (no {GALLERY_JSON}); pass an empty or new "
                           "folder with --gallery, since writing a gallery replaces the folder")
    enrolled = sorted(gallery.enrolled)
    record = {"format_version": FORMAT_VERSION, "model_sha256": gallery.model_sha256, "threshold": gallery.threshold,
              "known_identities": list(gallery.known_labels),
              "enrolled": [{"name": name, "photos": len(gallery.enrolled[name]), "sources": gallery.sources.get(name, [])}
                           for name in enrolled]}
    with atomic_dir(directory) as staging:
        np.savez(staging / EMBEDDINGS_NPZ, known_centroids=gallery.known_centroids,
                 **{f"enrolled_{index}": gallery.enrolled[name] for index, name in enumerate(enrolled)})
        (staging / GALLERY_JSON).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_gallery(directory: Path, model_sha256: str | None = None) -> Gallery:
    """Load a gallery; with `model_sha256`, refuse one computed with any other model."""
    directory = Path(directory)
    if not (directory / GALLERY_JSON).is_file():
        raise GalleryError(f"no gallery at {directory} ({GALLERY_JSON} missing); create one with "
                           "`python -m facerec.enroll PEOPLE_DIR --gallery DIR`")
    try:
        record = json.loads((directory / GALLERY_JSON).read_text(encoding="utf-8"))
        with np.load(directory / EMBEDDINGS_NPZ) as arrays:
            known = arrays["known_centroids"]
            enrolled = {person["name"]: arrays[f"enrolled_{index}"] for index, person in enumerate(record["enrolled"])}
    except (OSError, ValueError, KeyError) as error:
        raise GalleryError(f"gallery {directory} is damaged ({type(error).__name__}: {error}); enrol again into a "
                           "new folder") from error
    if model_sha256 is not None and record["model_sha256"] != model_sha256:
        raise GalleryError(
            f"gallery {directory} was computed with another model (sha256 {record['model_sha256'][:12]}…, this "
            f"model is {model_sha256[:12]}…); embeddings of different models cannot be compared. Use the model it "
            "was built with, or enrol the people again into a new gallery")
    return Gallery(record["model_sha256"], record["threshold"], tuple(record["known_identities"]), known, enrolled,
                   {person["name"]: person["sources"] for person in record["enrolled"]})


def describe_match(path, embedding: np.ndarray, gallery_view: tuple, top_k: int, threshold: float) -> dict:
    """One photo's result: the top-k identities by cosine, and `unknown` when even the best is below threshold."""
    names, prototypes, enrolled_flags = gallery_view
    cosines = identify(embedding[None], prototypes)[0]
    order = np.argsort(-cosines, kind="stable")[:top_k]
    score = float(cosines[order[0]])
    return {"path": str(path), "prediction": names[order[0]] if score >= threshold else "unknown", "score": score,
            "score_name": "cosine", "threshold": threshold,
            "top_k": [{"identity": names[i], "cosine": round(float(cosines[i]), 5), "enrolled": bool(enrolled_flags[i])}
                      for i in order]}
