"""Domain randomisation beyond physics in the sampler: off by default, labels
untouched, clutter only over the background, one compilation for all settings."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxsim.population import SamplerSpec, check_spec, sample_batch


@pytest.mark.integration  # compiles the sampler (~10-20 s)
def test_randomisation_keeps_labels_and_paints_only_the_background():
    base = SamplerSpec(shape=(48, 48), normalize=False, n_coils=2,
                       active_coils=(1.0, 2.0))  # fmt: skip
    key = jax.random.key(3)
    plain = sample_batch(key, 4, base)
    clutter = sample_batch(key, 4, base.replace(clutter=(12.0, 12.0)))
    synth = sample_batch(key, 4, base.replace(random_appearance=(1.0, 1.0)))
    off = sample_batch(key, 4, base.replace(clutter=(0.0, 0.0)))
    images, labels = np.asarray(plain.images), np.asarray(plain.labels)
    for other in (clutter, synth, off):
        np.testing.assert_array_equal(np.asarray(other.labels), labels)
    np.testing.assert_array_equal(np.asarray(off.images), images)  # off: no change
    c = np.asarray(clutter.images)
    heart = labels > 0
    np.testing.assert_array_equal(c[heart], images[heart])
    assert np.mean(c[~heart] != images[~heart]) > 0.05  # blobs were painted
    s = np.asarray(synth.images)
    assert np.all(np.isfinite(s)) and np.all(s >= 0) and not np.allclose(s, images)


def test_randomisation_ranges_are_checked():
    with pytest.raises(ValueError, match="random_appearance must lie within"):
        check_spec(SamplerSpec(random_appearance=(0.0, 1.5)))
    with pytest.raises(ValueError, match="clutter must lie within"):
        check_spec(SamplerSpec(clutter=(0.0, 13.0)))
