"""The numbers behind the figures (bliss_utils.evaluation.analysis), on hand-computed toys."""

from __future__ import annotations

import pytest


def test_errors_by_quantile_counts_by_hand() -> None:
    import numpy as np

    from bliss_utils.evaluation.analysis import errors_by_quantile

    sim = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    anomaly = np.array([False, True, False, True, False, True])
    flagged = np.array([True, False, False, False, True, True])  # FP at 0.1 and 0.5; FN at 0.2 and 0.4
    t = errors_by_quantile(sim, flagged, anomaly, n_quantiles=3)
    assert t["fn"].tolist() == [1, 1, 0] and t["fp"].tolist() == [1, 0, 1]
    assert t["fn_share"].tolist() == [0.5, 0.5, 0.0] and t["fp_rate"].tolist() == [0.5, 0.0, 0.5]
    with pytest.raises(ValueError):
        errors_by_quantile(sim, flagged.astype(int), anomaly)


def test_mean_cosines_on_orthogonal_vectors() -> None:
    import numpy as np

    from bliss_utils.evaluation.analysis import mean_cosine_similarities

    texts = np.eye(4)[:2]  # two class texts, orthogonal
    images = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], float)
    out = mean_cosine_similarities(images, np.array([0, 0, 1]), texts, dictionary=np.eye(4))
    assert out["text_text"] == pytest.approx(0.0)
    assert out["image_image"] == pytest.approx(1 / 3)  # one identical pair out of three
    assert out["image_own_text"] == pytest.approx(2 / 3)
    assert out["text_dictionary"] == pytest.approx(0.25)


def test_error_similarity_correlation_is_spearman_and_undefined_without_errors() -> None:
    import numpy as np
    import pandas as pd

    from bliss_utils.evaluation import analysis

    table = pd.DataFrame({"quantile": [1, 2, 3, 4], "fn_share": [0.1, 0.2, 0.3, 0.4], "fp_share": [0.4, 0.3, 0.0, 0.3]})
    rho = analysis.error_similarity_correlation(table)
    assert rho["spearman_fn"] == pytest.approx(1.0)
    # fp ranks 4, 2.5, 1, 2.5 against 1..4: Pearson of the ranks
    ranks = np.array([4, 2.5, 1, 2.5])
    assert rho["spearman_fp"] == pytest.approx(np.corrcoef([1, 2, 3, 4], ranks)[0, 1])
    none = analysis.error_similarity_correlation(table.assign(fn_share=0.0))
    assert np.isnan(none["spearman_fn"]) and none["spearman_fp"] == rho["spearman_fp"]
