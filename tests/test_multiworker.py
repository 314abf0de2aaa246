"""Real multi-worker training: two local worker processes, MultiWorkerMirroredStrategy over TF_CONFIG."""

from __future__ import annotations

import json
import re
import socket

import pytest
from train_project import make_project, start_training


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now (bound together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_only_the_chief_writes(tmp_path, synthetic_root):
    project = make_project(tmp_path / "project", synthetic_root, fine_tune_epochs=0, epochs=2, deterministic=False)
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes, logs = [], []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        logs.append(tmp_path / f"worker{index}.log")
        processes.append(start_training(project, synthetic_root, logs[-1], TF_CONFIG=tf_config,
                                        TMPDIR=str(tmp_path)))
    try:
        codes = [process.wait(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    texts = [log.read_text(encoding="utf-8", errors="replace") for log in logs]
    assert codes == [0, 0], "both workers finish:\n" + "\n".join(text[-3000:] for text in texts)
    assert all("on 2 replica(s)" in text for text in texts), "each worker sees the 2-replica cluster"
    digests = [re.search(r"Final weights sha256 (\w+)", text).group(1) for text in texts]
    assert digests[0] == digests[1], "all-reduced updates leave both workers with identical weights"
    card = json.loads((project / "models/model_card.json").read_text(encoding="utf-8"))
    assert card["weights_sha256"] == digests[0] and card["replicas"] == 2, "the chief saved the shared model"
    assert (card["global_batch_size"], card["effective"]["batch_size_per_replica"]) == (6, 3), \
        "train.batch_size is the global batch on any hardware, split over the replicas"
    assert all("decodes and caches 18 of 36 training images; 6 steps per epoch" in text for text in texts), \
        "each worker decodes only its half of the training set, and both take the same steps"
    assert all("learning rate 0.001, as on one device" in text for text in texts), "the log says the recipe holds"
    assert not list(tmp_path.glob("facerec-worker1-*")), "the non-chief's scratch outputs are cleaned up"
    assert not list((project / ".cache").glob("train-backup*")), "finished runs leave no backups"
