"""Open-set rejection maths: threshold from val, error rates, AUROC and the threshold file's model check."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from facerec.open_set import (
    auroc,
    choose_threshold,
    known_score,
    model_digest,
    read_threshold,
    rejection_rates,
    summarise,
)


@pytest.mark.parametrize("rate", [0.5, 0.9, 0.95, 1.0])
def test_threshold_is_the_highest_meeting_the_acceptance_target(rate):
    val_scores = np.random.default_rng(0).random(200)
    threshold = choose_threshold(val_scores, rate)
    assert np.mean(val_scores >= threshold) >= rate, "at least the target share of known val images is accepted"
    higher = np.sort(val_scores[val_scores > threshold])
    if len(higher):
        assert np.mean(val_scores >= higher[0]) < rate, "the next higher score would accept too few"


def test_threshold_rounding_does_not_reject_an_extra_image():
    assert choose_threshold(np.arange(10.0), 0.9) == 1.0, "exactly one of ten may be rejected at 90 %"


def test_rates_and_auroc():
    known, unknown = np.array([0.8, 0.9, 0.95, 0.99]), np.array([0.2, 0.4, 0.85])
    rates = rejection_rates(known, unknown, threshold=0.9)
    assert rates["false_reject_rate"] == 0.25, "0.8 falls below the threshold"
    assert rates["false_accept_rate"] == 0.0, "no unknown reaches 0.9"
    assert auroc(known, unknown) == pytest.approx(11 / 12, abs=1e-5), "11 of 12 known/unknown pairs are ordered right"
    assert "false_accept_rate" not in rejection_rates(known, None, 0.9), "no unknowns, no false-accept rate"


def test_scores_from_probabilities_and_logits():
    probabilities, logits = np.array([[0.7, 0.3], [0.5, 0.5]]), np.array([[3.0, 2.2], [9.0, 9.0]])
    np.testing.assert_allclose(known_score(probabilities, logits, "max_softmax"), [0.7, 0.5])
    np.testing.assert_allclose(known_score(probabilities, logits, "max_logit"), [3.0, 9.0])
    with pytest.raises(ValueError, match="max_logit"):
        known_score(probabilities, logits, "entropy")


def test_summary_with_and_without_unknowns():
    rng = np.random.default_rng(1)
    val = {"max_softmax": rng.random(50), "max_logit": rng.random(50)}
    test = {"max_softmax": rng.random(40), "max_logit": rng.random(40)}
    unknown = {"max_softmax": rng.random(30) * 0.5, "max_logit": rng.random(30)}
    summary = summarise(val, test, unknown, "max_softmax", 0.9, unknown_identities=2)
    assert summary["n_unknown"] == 30 and summary["n_unknown_identities"] == 2, "what FAR was measured on"
    assert set(summary["auroc_by_score"]) == {"max_softmax", "max_logit"}, "both scores compared"
    closed = summarise(val, test, None, "max_softmax", 0.9, unknown_identities=0)
    assert "auroc" not in closed and closed["threshold"] == summary["threshold"], "threshold comes from val alone"


def test_threshold_file_is_tied_to_the_model(tmp_path, caplog):
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    record = {"score": "max_softmax", "threshold": 0.6, "model_sha256": model_digest(model)}
    (tmp_path / "open_set.json").write_text(json.dumps(record), encoding="utf-8")
    assert read_threshold(tmp_path / "open_set.json", model) == record, "same weights: threshold applies"
    assert read_threshold(tmp_path / "absent.json", model) is None, "no file: no threshold"
    model.write_bytes(b"retrained weights")
    with caplog.at_level(logging.WARNING):
        assert read_threshold(tmp_path / "open_set.json", model) is None, "stale threshold is not applied"
    assert "dvc repro evaluate" in caplog.text, "the warning says how to fix it"
