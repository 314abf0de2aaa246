"""Several workers: each decodes its own share of the training set, and the global batch is the recipe's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from facerec.data import training_epochs
from facerec.errors import ParamsError
from facerec.runtime import split_batch, worker_share
from facerec.worker_input import steps_per_worker_epoch


def test_each_worker_decodes_a_disjoint_share_and_together_all(synthetic_root):
    rows = [{"path": path.relative_to(synthetic_root).as_posix(), "identity": path.parent.name}
            for path in sorted(synthetic_root.rglob("*.jpg"))]
    frame = pd.DataFrame(rows)
    labels = sorted(frame["identity"].unique())
    shares = [training_epochs(frame, synthetic_root, labels, image_size_px=32, batch_size=4, seed=3, share=(index, 3))
              for index in range(3)]
    assert [share.size for share in shares] == [16, 16, 16], "48 images in three equal shares"
    seen = [sorted(image.numpy().tobytes() for image, _ in share.examples) for share in shares]
    assert not set(seen[0]) & set(seen[1]) and not set(seen[1]) & set(seen[2]), "no image decoded by two workers"
    whole = training_epochs(frame, synthetic_root, labels, image_size_px=32, batch_size=4, seed=3)
    assert sorted(sum(seen, [])) == sorted(image.numpy().tobytes() for image, _ in whole.examples), \
        "the shares together are the training set"


def test_every_worker_takes_the_same_number_of_full_steps():
    assert steps_per_worker_epoch(12_300, 2, 32) == 384, "6,150 images a worker, 16 a step: 384 steps"
    assert steps_per_worker_epoch(37, 2, 6) == 6, "the smaller share (18) decides"
    with pytest.raises(ParamsError, match="train.batch_size = 64"):
        steps_per_worker_epoch(40, 2, 64)


def test_the_global_batch_is_split_evenly_or_refused():
    assert split_batch(32, 8, "train.batch_size") == 4, "8 GPUs share the recipe's batch of 32"
    with pytest.raises(ParamsError, match=r"train.batch_size = 32 .* 3 replicas.*multiple of 3"):
        split_batch(32, 3, "train.batch_size")


@pytest.mark.parametrize(("cluster", "task", "expected"), [
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, (1, 2)),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, {"type": "chief", "index": 0}, (0, 3)),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, (1, 3)),
])
def test_worker_share_numbers_tasks_as_tf_distribute_does(monkeypatch, cluster, task, expected):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert worker_share() == expected, "the chief is input pipeline 0, workers follow"
