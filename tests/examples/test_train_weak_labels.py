"""examples/train_weak_labels.py: the quick run trains, its TC model follows the
torch.nn twin step for step and predicts caption words far above chance."""

from __future__ import annotations

import pytest
from example_scripts import load_example

pytest.importorskip("sklearn")


def _load_script():
    return load_example("train_weak_labels")


def test_quick_run_matches_torch_and_learns(tmp_path) -> None:
    script = _load_script()
    result = script.main(["--quick", "--quiet", "--cache", str(tmp_path / "c.sqlite")])
    tc_losses, torch_losses = result["tc"]["batch_losses"], result["torch"]["batch_losses"]
    assert len(tc_losses) == len(torch_losses) == 20
    assert tc_losses[0] == pytest.approx(torch_losses[0], abs=1e-5)
    assert tc_losses == pytest.approx(torch_losses, abs=1e-3)
    assert sum(tc_losses[-3:]) < sum(tc_losses[:3]) - 0.3
    final_tc, final_torch = result["tc"]["precisions"][-1], result["torch"]["precisions"][-1]
    assert final_tc["clean P@5"] > 3 * result["chance"]
    for k, v in final_tc.items():
        assert abs(v - final_torch[k]) <= 2.0, k


def test_captions_follow_the_topics() -> None:
    script = _load_script()
    c = script.Config(vocab=300, topic=7, bag=6, noise=0.25)
    data = script.make_data(c)
    assert data.cap_train.shape[1] == 6 and int(data.cap_train.max()) < 300
    in_topic = (data.cap_test.unsqueeze(2) == data.topics[data.y_test].unsqueeze(1)).any(2)
    assert 0.65 < in_topic.float().mean().item() < 0.85  # 75% + a little chance


def test_precision_at_k() -> None:
    import torch

    script = _load_script()
    logits = torch.zeros(2, 10)
    logits[0, 1], logits[0, 2], logits[1, 3], logits[1, 4] = 2.0, 1.0, 2.0, 1.0
    relevant = torch.tensor([[1, 9], [4, 4]])
    assert script.precision_at_k(logits, relevant, 1) == pytest.approx(50.0)
    assert script.precision_at_k(logits, relevant, 2) == pytest.approx(50.0)
