"""The contract every training-side artifact implementation keeps (C: portal/ai/artifacts_c.py, D:
portal/ai/artifacts_d.py; A has its own tests in test_artifacts.py, the held-out B in test_native_simulation.py):
the input is never changed, the output is a float32 image in [0, 1] that the artifact visibly changed, the same
seed gives the same corruption, and a higher severity a worse one."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts_c as impl_c, artifacts_d as impl_d

CASES = [(impl, name) for impl in (impl_c, impl_d) for name in impl.ARTIFACT_FUNCTIONS]
IDS = [f"{impl.__name__.rsplit('_', 1)[1]}-{name}" for impl, name in CASES]


@pytest.mark.parametrize(("impl", "name"), CASES, ids=IDS)
def test_keeps_the_contract_and_is_seeded(square, impl, name):
    fn = impl.ARTIFACT_FUNCTIONS[name]
    before = square.copy()
    out = fn(square, 0.8, 7)
    np.testing.assert_array_equal(square, before)  # the input is never changed
    assert out.shape == square.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - square).mean() > 0.003, "the artifact must change the image"
    np.testing.assert_array_equal(out, fn(square, 0.8, 7))
    assert not np.array_equal(out, fn(square, 0.8, 8))


@pytest.mark.parametrize(("impl", "name"), CASES, ids=IDS)
def test_severity_makes_it_worse(square, impl, name):
    fn = impl.ARTIFACT_FUNCTIONS[name]
    worse = np.mean([np.abs(fn(square, 1.0, s) - square).mean() for s in range(4)])
    milder = np.mean([np.abs(fn(square, 0.05, s) - square).mean() for s in range(4)])
    assert worse > milder
