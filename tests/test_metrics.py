"""Metrics on hand-computed toys, the one-sided t-test, and the paper's reported numbers (reported.json)."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bliss_utils.evaluation.metrics import (
    auroc,
    beats_next_best,
    fpr95,
    fpr_at_tpr,
    one_sided_ttest,
    one_sided_ttest_from_stats,
    significance_stars,
)
from bliss_utils.evaluation.reported import COLUMNS, reported_cell, reported_results

# ---------------------------------------------------------------- AUROC


def test_auroc_by_hand():
    # anomalies {0.35, 0.8} vs normals {0.1, 0.4}: 3 of 4 pairs ranked correctly
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auroc_counts_ties_as_half():
    # anomalies {1, 2} vs normals {0, 1}: pairs 1>0, 1=1 (half), 2>0, 2>1 -> 3.5 / 4
    assert auroc([0, 1, 1, 2], [False, False, True, True]) == pytest.approx(0.875)
    assert auroc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_auroc_direction_anomaly_is_positive():
    assert auroc([0, 1, 2, 3], [0, 0, 1, 1]) == 1.0
    assert auroc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=30))
def test_auroc_of_negated_scores_is_complement(pairs):
    scores = np.array([p[0] for p in pairs], dtype=float)  # small integer range: many ties
    labels = np.array([p[1] for p in pairs])
    if labels.all() or not labels.any():
        with pytest.raises(ValueError, match="both normals and anomalies"):
            auroc(scores, labels)
        return
    assert auroc(-scores, labels) == pytest.approx(1 - auroc(scores, labels))
    # AUROC is P(score_anomaly > score_normal) + 0.5 P(tie): brute force over all pairs
    a, n = scores[labels], scores[~labels]
    brute = ((a[:, None] > n[None]).sum() + 0.5 * (a[:, None] == n[None]).sum()) / (a.size * n.size)
    assert auroc(scores, labels) == pytest.approx(brute)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
        ([0.1, np.nan, 0.3], [0, 1, 1], "NaN or infinite"),
        ([0.1, np.inf, 0.3], [0, 1, 1], "NaN or infinite"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "both normals and anomalies"),
        ([0.1, 0.2, 0.3], [0, 0, 0], "both normals and anomalies"),
        ([0.1, 0.2, 0.3], [0, 1, 2], "boolean"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
    ],
)
def test_metric_errors(scores, labels, match):
    for metric in (auroc, fpr95):
        with pytest.raises(ValueError, match=match):
            metric(scores, labels)


# ---------------------------------------------------------------- FPR at TPR

ANOMALY_SCORES = np.arange(10.0, 30.0)  # 20 anomalies; catching 19 (95%) needs a threshold of 11


def _toy(normal_scores):
    scores = np.concatenate([ANOMALY_SCORES, normal_scores])
    is_anomaly = np.r_[np.ones(ANOMALY_SCORES.size, bool), np.zeros(len(normal_scores), bool)]
    return scores, is_anomaly


def test_fpr95_by_hand():
    # threshold 11: normals 12 and 30 are flagged, 0, 5 and 10.5 are not -> 2 / 5
    scores, y = _toy([0.0, 5.0, 10.5, 12.0, 30.0])
    assert fpr95(scores, y) == pytest.approx(0.4)
    # all anomalies caught needs threshold 10: 10.5 is flagged too
    assert fpr_at_tpr(scores, y, tpr=1.0) == pytest.approx(0.6)
    # half the anomalies: threshold 20 -> only the normal at 30
    assert fpr_at_tpr(scores, y, tpr=0.5) == pytest.approx(0.2)


def test_fpr95_flags_a_normal_tied_with_the_threshold():
    scores, y = _toy([0.0, 5.0, 11.0, 12.0, 30.0])
    assert fpr95(scores, y) == pytest.approx(0.6)


def test_fpr95_is_anomaly_positive_not_normal_positive():
    # an asymmetric example where the other convention (normal = positive, FPR = anomalies accepted) differs
    scores, y = _toy([0.0, 5.0, 10.5, 12.0, 30.0])
    assert fpr95(scores, y) != pytest.approx(fpr95(-scores, ~y))


def test_fpr_at_tpr_rejects_bad_target():
    scores, y = _toy([0.0, 1.0])
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="tpr must be"):
            fpr_at_tpr(scores, y, tpr=bad)


def test_fpr95_perfect_and_reversed():
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    s = np.arange(100.0)
    assert fpr95(s, y) == 0.0
    assert fpr95(-s, y) == 1.0


# ---------------------------------------------------------------- t-test


def test_welch_ttest_by_hand():
    a, b = [1, 2, 3, 4, 5], [0, 1, 1, 2, 2]
    # means 3 and 1.2, sample variances 2.5 and 0.7: se = 0.8, t = 2.25, Welch-Satterthwaite df
    va, vb = 2.5 / 5, 0.7 / 5
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    expected = stats.t.sf(2.25, df)
    assert one_sided_ttest(a, b) == pytest.approx(expected, rel=1e-10)
    assert one_sided_ttest(b, a) == pytest.approx(1 - expected, rel=1e-10)


def test_ttest_from_stats_matches_raw_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 7), rng.normal(0.0, 2.0, 5)
    p_raw = one_sided_ttest(a, b)
    # population std (ddof=0), as the paper reports
    p_pop = one_sided_ttest_from_stats(a.mean(), a.std(), a.size, b.mean(), b.std(), b.size)
    p_samp = one_sided_ttest_from_stats(
        a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size, population_std=False
    )
    assert p_pop == pytest.approx(p_raw, rel=1e-10)
    assert p_samp == pytest.approx(p_raw, rel=1e-10)


def test_ttest_errors():
    with pytest.raises(ValueError, match="at least 2"):
        one_sided_ttest([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        one_sided_ttest([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="n_a must be an integer >= 2"):
        one_sided_ttest_from_stats(1, 1, 1, 0, 1, 5)
    with pytest.raises(ValueError, match=">= 0"):
        one_sided_ttest_from_stats(1, -1, 5, 0, 1, 5)
    with pytest.raises(ValueError, match="both standard deviations are 0"):
        one_sided_ttest_from_stats(1, 0, 5, 0, 0, 5)


# ---------------------------------------------------------------- Table 1's stars (BLISS vs the next best row)

OURS = [0.95, 0.97, 0.96, 0.98]
RIVAL = [0.90, 0.93, 0.91, 0.94]


def _trials(cells):
    """Per-trial results like evaluate_grid's (plus "group") from {(setting, group, method): [auroc, ...]}."""
    return pd.DataFrame(
        [
            {
                "dataset": setting.rsplit("-", 1)[0],
                "encoder": "enc",
                "setting": setting,
                "trial": t,
                "method": method,
                "lam": np.nan,
                "k": np.nan,
                "n_shots": 0,
                "auroc": a,
                "fpr95": 0.5,
                "seconds": 0.0,
                "group": group,
            }
            for (setting, group, method), aurocs in cells.items()
            for t, a in enumerate(aurocs)
        ]
    )


def _rows(trials, reported=()):
    """Table 1's rows: measured means and population stds of ``trials``, then reported (group, method, setting,
    mean, std, n_trials) rows."""
    g = trials.groupby(["group", "method", "setting"], sort=False)["auroc"]
    measured = g.agg(mean="mean", std=lambda x: float(np.std(x)), n_trials="count").reset_index()
    cols = ["group", "method", "setting", "mean", "std", "n_trials"]
    copied = pd.DataFrame(list(reported), columns=cols)
    return pd.concat([measured.assign(source="measured"), copied.assign(source="reported")], ignore_index=True)


def _welch(a, b):
    return stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue


def _assert_star_at(p, trials, rows, setting="s-1", **kw):
    """The star flips exactly at the t-test's p-value: set below p -> no star, above p -> star."""
    assert 0 < p < 1
    assert beats_next_best(trials, rows, setting, alpha=p * (1 + 1e-6), **kw) is True
    assert beats_next_best(trials, rows, setting, alpha=p * (1 - 1e-6), **kw) is False


def test_star_against_the_best_measured_row_is_welchs_test():
    trials = _trials(
        {
            ("s-1", "clip-based", "bliss"): OURS,
            ("s-1", "clip-based", "mcm"): RIVAL,
            ("s-1", "clip-based", "dn2"): [0.5, 0.6, 0.55, 0.52],  # lower mean: not the one tested against
        }
    )
    rows = _rows(trials)
    _assert_star_at(_welch(OURS, RIVAL), trials, rows)
    assert significance_stars(trials, rows, alpha=0.05) == {"s-1": _welch(OURS, RIVAL) < 0.05}


def test_star_against_the_rival_of_the_right_group():
    # the same method in the other group is a separate row with its own trials
    weak = [0.80, 0.85, 0.70, 0.88]
    trials = _trials(
        {
            ("s-1", "clip-based", "bliss"): OURS,
            ("s-1", "clip-based", "dn2"): weak,
            ("s-1", "image-only", "dn2"): RIVAL,
        }
    )
    _assert_star_at(_welch(OURS, RIVAL), trials, _rows(trials))


def test_star_against_a_reported_row_uses_its_mean_and_population_std():
    trials = _trials({("s-1", "clip-based", "bliss"): OURS, ("s-1", "clip-based", "mcm"): RIVAL})
    mean, std, n = 0.955, 0.01, 5  # reported above mcm's measured mean: the reported row is the one to beat
    rows = _rows(trials, [("image-only", "csi", "s-1", mean, std, n)])
    ours = np.asarray(OURS)
    p = stats.ttest_ind_from_stats(
        ours.mean(),
        ours.std(ddof=1),
        ours.size,
        mean,
        std * np.sqrt(n / (n - 1)),
        n,
        equal_var=False,
        alternative="greater",
    ).pvalue
    _assert_star_at(p, trials, rows)


def test_star_ignores_excluded_rows_and_ours():
    trials = _trials(
        {
            ("s-1", "clip-based", "bliss"): OURS,
            ("s-1", "clip-based", "ssd"): [0.99, 0.995, 0.99, 0.999],  # excluded (a † row), though highest
            ("s-1", "clip-based", "mcm"): RIVAL,
        }
    )
    rows = _rows(trials)
    _assert_star_at(_welch(OURS, RIVAL), trials, rows, exclude=["ssd"])
    # not excluded, ssd is the row to beat and BLISS does not beat it
    assert beats_next_best(trials, rows, "s-1", alpha=0.5) is False
    assert _welch(OURS, [0.99, 0.995, 0.99, 0.999]) > 0.5


def test_star_on_a_tie_tests_against_the_first_row_with_the_highest_mean():
    first = [0.8125, 0.875, 0.84375, 0.84375]  # binary fractions: both means are exactly 0.84375
    second = [0.75, 0.9375, 0.78125, 0.90625]  # same mean, larger spread: a larger p-value
    assert np.mean(first) == np.mean(second)
    trials = _trials(
        {
            ("s-1", "clip-based", "bliss"): OURS,
            ("s-1", "clip-based", "mcm"): first,
            ("s-1", "image-only", "dn2"): second,
        }
    )
    rows = _rows(trials)
    p_first, p_second = _welch(OURS, first), _welch(OURS, second)
    assert p_first < p_second
    _assert_star_at(p_first, trials, rows)


def test_star_with_equal_means_is_never_significant():
    trials = _trials({("s-1", "clip-based", "bliss"): RIVAL, ("s-1", "clip-based", "mcm"): RIVAL})
    assert _welch(RIVAL, RIVAL) == pytest.approx(0.5)
    _assert_star_at(0.5, trials, _rows(trials))


def test_no_star_with_a_single_trial_or_nothing_to_beat():
    one = _trials({("s-1", "clip-based", "bliss"): [0.99], ("s-1", "clip-based", "mcm"): RIVAL})
    assert beats_next_best(one, _rows(one), "s-1", alpha=1.0) is False  # one trial: no variance to test
    alone = _trials({("s-1", "clip-based", "bliss"): OURS, ("s-2", "clip-based", "mcm"): RIVAL})
    assert significance_stars(alone, _rows(alone), alpha=1.0) == {"s-1": False, "s-2": False}


def test_stars_per_setting_in_row_order():
    trials = _trials(
        {
            ("s-2", "clip-based", "bliss"): RIVAL,
            ("s-2", "clip-based", "mcm"): OURS,  # BLISS loses here
            ("s-1", "clip-based", "bliss"): OURS,
            ("s-1", "clip-based", "mcm"): RIVAL,
        }
    )
    stars = significance_stars(trials, _rows(trials), alpha=0.05)
    assert list(stars) == ["s-2", "s-1"]
    assert stars == {"s-2": _welch(RIVAL, OURS) < 0.05, "s-1": _welch(OURS, RIVAL) < 0.05}
    assert stars == {"s-2": False, "s-1": True}


# ---------------------------------------------------------------- the paper's reported numbers


def _table1():
    df = reported_results()
    return df[df["table"] == "table1"]


def _p_bliss_vs_best_other(setting):
    t1 = _table1()
    rows = t1[t1["setting"] == setting]
    bliss = rows[rows["method"] == "bliss"].iloc[0]
    other = rows[rows["method"] != "bliss"].sort_values("auroc_mean").iloc[-1]
    p = one_sided_ttest_from_stats(
        bliss.auroc_mean, bliss.auroc_std, bliss.n_trials, other.auroc_mean, other.auroc_std, other.n_trials
    )
    return p, bliss, other


def test_paper_stars_are_reproduced_from_table1():
    t1 = _table1()
    for setting in t1["setting"].unique():
        p, bliss, _ = _p_bliss_vs_best_other(setting)
        assert (p < 0.05) == bool(bliss.starred), (setting, p)


def test_named_star_examples():
    # CIFAR-10 6 classes: BLISS vs DINO-FT over 5 trials is significant; 1 class vs DINO-FT over 10 trials is not
    p6, bliss6, other6 = _p_bliss_vs_best_other("cifar10-6")
    assert (other6.method, bliss6.n_trials, bool(bliss6.starred)) == ("dino-ft", 5, True)
    assert p6 < 0.05
    p1, bliss1, other1 = _p_bliss_vs_best_other("cifar10-1")
    assert (other1.method, bliss1.n_trials, bool(bliss1.starred)) == ("dino-ft", 10, False)
    assert p1 > 0.05


def test_reported_frame_shape_and_labels():
    df = reported_results()
    assert list(df.columns) == COLUMNS
    assert set(df["table"]) == {"table1", "table2", "table3", "dictionary_ablation"}
    assert df["source"].str.startswith("reported in Goodge et al. 2024").all()
    # 15 Table 1 rows x 5 settings minus 8 '-' cells and one unreadable DINO-FT cell; 6 x 5; 9 x 3; 2
    assert df.groupby("table").size().to_dict() == {"table1": 66, "table2": 30, "table3": 27, "dictionary_ablation": 2}
    assert df["auroc_mean"].between(50, 100).all()
    t1 = df[df["table"] == "table1"]
    assert t1["auroc_std"].notna().all() and df[df["table"] != "table1"]["auroc_std"].isna().all()
    assert set(df["n_trials"]) == {5, 10}


def test_reported_tables_agree_with_each_other():
    """The paper repeats numbers across tables at different precision: a transcription slip breaks this."""
    df = reported_results()

    def means(table, method, backbone="clip-vit-b16", **where):
        rows = df[(df["table"] == table) & (df["method"] == method) & (df["backbone"] == backbone)]
        for col, value in where.items():
            rows = rows[rows[col] == value]
        return rows.set_index("setting")["auroc_mean"]

    t1_bliss, t2_half = means("table1", "bliss"), means("table2", "bliss", lam=0.5)
    assert list(t1_bliss.index) == list(t2_half.index)
    for s in t1_bliss.index:
        assert round(t2_half[s], 1) == pytest.approx(t1_bliss[s])
    t3_bliss, t3_ic, t3_raw = (
        means("table3", "bliss"),
        means("table3", "biased-clip"),
        means("table3", "raw-similarity"),
    )
    t1_ic = means("table1", "biased-clip")
    for s in t3_bliss.index:
        assert abs(t3_bliss[s] - t2_half[s]) <= 0.011  # 96.02 vs 96.01: the paper's own inconsistency
        assert round(t3_ic[s], 1) == pytest.approx(t1_ic[s])
        assert t3_raw[s] < t3_ic[s] < t3_bliss[s]  # the ablation's ordering on CLIP
    ablation = df[df["table"] == "dictionary_ablation"].set_index("dictionary")["auroc_mean"]
    assert ablation["imagenet"] == pytest.approx(t1_bliss["tinyimagenet-20"])
    assert ablation["imagenet-minus-tinyimagenet"] < ablation["imagenet"]


def test_reported_cell_errors():
    with pytest.raises(ValueError, match="0 reported rows"):
        reported_cell("table1", "cifar10-1", "mcm")  # MCM has no 1-class result
    with pytest.raises(ValueError, match="6 reported rows"):
        reported_cell("table2", "cifar10-1", "bliss")  # one per lambda: ambiguous without lam=
    df = reported_results()
    row = df[(df["table"] == "table2") & (df["setting"] == "cifar10-1") & (df["lam"] == 0.75)]
    mean, std = reported_cell("table2", "cifar10-1", "bliss", lam=0.75)
    assert mean == row["auroc_mean"].item() and math.isnan(std)
