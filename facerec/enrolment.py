"""Measure enrolment: held-out identities enrolled from a few photos, then identified among everyone."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from facerec.evaluation import wilson_interval
from facerec.gallery import Gallery, identify

log = logging.getLogger(__name__)


def enrolment_split(frame: pd.DataFrame, enrol_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (enrol, probe): `enrol_images` seeded photos per identity to enrol, the rest to identify.

    Identities with no photo left to identify are skipped with a warning.
    """
    rng = np.random.default_rng(seed)
    enrol, probe = [], []
    for identity, rows in frame.groupby("identity", sort=True).indices.items():
        if len(rows) <= enrol_images:
            log.warning("held-out identity %s has %d photos, not more than evaluate.enrol_images = %d; not "
                        "used to measure enrolment", identity, len(rows), enrol_images)
            continue
        chosen = np.zeros(len(rows), bool)
        chosen[rng.choice(len(rows), enrol_images, replace=False)] = True
        enrol.extend(rows[chosen])
        probe.extend(rows[~chosen])
    return np.sort(np.asarray(enrol, int)), np.sort(np.asarray(probe, int))


def enrolment_metrics(known: Gallery, unknown: pd.DataFrame, unknown_embeddings: np.ndarray,
                      test_embeddings: np.ndarray, enrol_images: int, seed: int) -> dict | None:
    """Top-1 accuracy on the enrolled people's other photos, and how often known test faces go to them."""
    enrol_rows, probe_rows = enrolment_split(unknown, enrol_images, seed)
    if not len(probe_rows):
        return None
    gallery = known
    identities = unknown["identity"].to_numpy()
    for name in sorted(set(identities[enrol_rows])):
        gallery = gallery.with_person(name, unknown_embeddings[enrol_rows[identities[enrol_rows] == name]], [])
    names, prototypes, enrolled_flags = gallery.prototypes()
    best = identify(unknown_embeddings[probe_rows], prototypes).argmax(axis=1)
    correct = int(np.sum(np.asarray(names)[best] == identities[probe_rows]))
    low, high = wilson_interval(correct, len(probe_rows))
    taken = int(enrolled_flags[identify(test_embeddings, prototypes).argmax(axis=1)].sum()) if len(test_embeddings) else 0
    return {"top1_accuracy": round(correct / len(probe_rows), 5), "top1_accuracy_ci95": [round(low, 5), round(high, 5)],
            "n": len(probe_rows), "n_identities": len(gallery.enrolled), "enrol_images": enrol_images,
            "known_taken_for_enrolled_rate": round(taken / max(len(test_embeddings), 1), 5),
            "n_known": len(test_embeddings)}
