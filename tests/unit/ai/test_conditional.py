"""The conditional reading of the quality outputs (`portal/ai/conditional.py`; issue 14, tried and not shipped):
a known table gives a known share, the pooled reading is 1.4.0's own, and leave-one-source-out is honoured."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import conditional as cond

REF_LOGITS = np.array([[0.0], [1.0], [2.0], [3.0]])  # four clean reference views, one output
REF_DESC = np.array([[0.0], [0.0], [10.0], [10.0]])  # two kinds of content
REF_SOURCE = np.array([0, 0, 1, 1])


def test_pooled_share_of_a_known_table():
    shares = cond.pooled_share(REF_LOGITS, np.array([[1.5], [-1.0], [5.0]]))[:, 0]
    # 1.5: rank 2.5 of 4 → 1 - 2.5/5; below the table: 1; beyond it: 1 - 4/5, times e^-(5 - 3)
    assert shares == pytest.approx([0.5, 1.0, 0.2 * np.exp(-2.0)])


def test_neighbours_give_the_local_share_and_the_blend():
    q_desc, x = np.array([[0.0]]), np.array([[0.5]])
    local = cond.conditional_share(REF_DESC, REF_LOGITS, q_desc, x, k=2, weight=1.0)[0, 0]
    assert local == pytest.approx(1 - 1.5 / 3)  # neighbours 0 and 1: rank 1.5 of 2
    pooled = cond.conditional_share(REF_DESC, REF_LOGITS, q_desc, x, k=0, weight=1.0)[0, 0]
    assert pooled == pytest.approx(1 - 1.5 / 5)
    half = cond.conditional_share(REF_DESC, REF_LOGITS, q_desc, x, k=2, weight=0.5)[0, 0]
    assert half == pytest.approx(np.sqrt(local * pooled))


def test_own_source_is_never_a_neighbour():
    x = np.array([[0.5]])
    loso = cond.conditional_share(REF_DESC, REF_LOGITS, np.array([[0.0]]), x, k=2, weight=1.0,
                                  ref_source=REF_SOURCE, q_source=np.array([0]))[0, 0]
    assert loso == pytest.approx(1.0)  # read against views 2 and 3 (logits 2, 3): none below 0.5


def test_distance_guard_falls_back_to_the_pooled_share():
    x = np.array([[0.5]])
    far = cond.conditional_share(REF_DESC, REF_LOGITS, np.array([[1e4]]), x, k=2, weight=1.0, dref=1.0)[0, 0]
    assert far == pytest.approx(1 - 1.5 / 5, rel=1e-6)


def test_quality_maps_the_smallest_share():
    q = cond.quality(np.array([[1.0, 0.01], [1.0, 1.0]]))
    assert q == pytest.approx([1 + np.log10(0.01 + 1e-4) / 4, 1.0])


def test_pooled_reading_is_the_shipped_models_own():
    torch = pytest.importorskip("torch")
    from portal.ai.registry import builtin_models_root

    model = torch.jit.load(str(builtin_models_root() / "lightbox-quality" / "1.4.0" / "model.pt"))
    table = model.clean_logits.numpy()  # (7, N) sorted
    rng = np.random.default_rng(0)
    raw = rng.normal(0.0, 3.0, (64, 7)).astype(np.float32)
    with torch.no_grad():
        expected = model.scores(torch.from_numpy(raw))[:, 0].numpy()
    got = cond.quality(cond.pooled_share(table.T, raw))
    assert got == pytest.approx(expected, abs=1e-4)


def test_descriptor_shape_and_names():
    torch = pytest.importorskip("torch")
    x = torch.rand(3, 2, 256, 256)
    assert cond.descriptor(x).shape == (3, len(cond.DESCRIPTOR_NAMES))
