import numpy as np

import fimkit as fk


def test_pk_bolus_rank_deficient():
    ex = fk.examples.pk_bolus()
    F = fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    w = np.linalg.eigvalsh(F.matrix)
    np.testing.assert_allclose(w[1:], [37.4902398, 349.504266], rtol=1e-8)
    assert F.rank() == 2
