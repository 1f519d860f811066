"""correlate: Kendall's tau against scipy, granulated tau by hand, seeded bootstrap, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.stats

from landscape import Comparison, correlate
from landscape.cli import main
from landscape.correlate import kendall_tau, read_hparams
from landscape.sharpness import SharpnessResult
from landscape.storage.compare import prepare_compare_file, write_compare_label


def comparison_file(path, evaluation, measures):
    """A comparison file as compare_checkpoints writes it, from given numbers."""
    prepare_compare_file(path, {"measures": sorted(next(iter(measures.values())))})
    for label in evaluation:
        results = {n: SharpnessResult(n, v, 0.1) for n, v in measures[label].items()}
        write_compare_label(
            path, label, checkpoint_sha256=f"sha-{label}", evaluation=evaluation[label],
            measures=results, surfaces={},
        )  # fmt: skip
    return path


def random_study(n=9, seed=0):
    rng = np.random.default_rng(seed)
    labels = [f"m{k}" for k in range(n)]
    test = np.round(rng.uniform(0.8, 1.0, n), 2)  # rounded: ties in the gap
    evaluation = {
        label: {"train_loss": 0.01, "train_accuracy": 1.0, "test_loss": float(2 - t),
                "test_accuracy": float(t)}
        for label, t in zip(labels, test, strict=True)
    }  # fmt: skip
    measures = {
        label: {"trace": float(rng.normal()), "rise": float(rng.integers(0, 3))}  # ties too
        for label in labels
    }
    return evaluation, measures


def test_kendall_tau_equals_scipy_with_ties_and_batches():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, (5, 12)).astype(float), rng.integers(0, 3, (5, 12)).astype(float)
    taus = kendall_tau(x, y)
    for k in range(5):
        assert taus[k] == pytest.approx(scipy.stats.kendalltau(x[k], y[k]).statistic, abs=1e-14)
    assert np.isnan(kendall_tau(np.ones(4), np.arange(4.0)))


def test_tau_equals_scipy_on_the_stored_values(tmp_path):
    evaluation, measures = random_study()
    path = comparison_file(tmp_path / "compare.h5", evaluation, measures)
    for gap in ("accuracy", "loss"):
        found = correlate(path, gap=gap, num_bootstrap=200)
        key = "gap_accuracy" if gap == "accuracy" else "gap_loss"
        rows = Comparison(evaluation, {k: {} for k in evaluation}, {}).table_rows()
        gap_of = {row["checkpoint"]: row[key] for row in rows}
        assert found.gap.tolist() == [gap_of[label] for label in found.labels]
        for name in ("trace", "rise"):
            values = [measures[label][name] for label in found.labels]
            gap_values = [gap_of[label] for label in found.labels]
            expected = scipy.stats.kendalltau(values, gap_values).statistic
            assert found.tau[name] == pytest.approx(expected, abs=1e-14)
            low, high = found.interval[name]
            assert -1 <= low <= high <= 1


def test_granulated_tau_against_a_hand_computed_case():
    # lr in {1, 2, 3} x batch in {a, b}; the measure ranks by lr like the gap for batch a,
    # the reverse for batch b; across batch sizes it agrees for every lr
    labels, gaps, sharp, hparams = [], {}, {}, {}
    for lr in (1, 2, 3):
        for batch, sign in (("a", 1), ("b", -1)):
            label = f"lr{lr}{batch}"
            labels.append(label)
            gaps[label] = 0.1 * lr + (0.5 if batch == "b" else 0.0)
            sharp[label] = sign * lr + (10 if batch == "b" else 0)
            hparams[label] = {"lr": lr, "batch": batch}
    evaluation = {lb: {"train_loss": 0.0, "train_accuracy": 1.0, "test_loss": 0.0,
                       "test_accuracy": 1.0 - gaps[lb]} for lb in labels}  # fmt: skip
    measures = {lb: {"trace": SharpnessResult("trace", float(sharp[lb]), 0.0)} for lb in labels}
    found = correlate(Comparison(evaluation, measures, {}), hparams, num_bootstrap=10)
    # lr: tau +1 within batch a, -1 within batch b -> 0; batch: +1 for each lr -> 1
    assert found.granulated["trace"] == {"lr": pytest.approx(0.0), "batch": pytest.approx(1.0)}
    assert found.granulated_tau["trace"] == pytest.approx(0.5)
    row = found.table_rows()[0]
    assert list(row) == ["measure", "tau", "tau_low", "tau_high", "granulated_tau", "psi_lr",
                         "psi_batch"]  # fmt: skip


def test_bootstrap_intervals_are_reproducible_from_the_seed():
    evaluation, measures = random_study(n=12)
    comparison = Comparison(evaluation, {k: {n: SharpnessResult(n, v, 0.0)
                                             for n, v in m.items()} for k, m in measures.items()},
                            {})  # fmt: skip
    a = correlate(comparison, num_bootstrap=300, seed=3)
    assert a == correlate(comparison, num_bootstrap=300, seed=3)
    assert a.interval != correlate(comparison, num_bootstrap=300, seed=4).interval


def test_comparisons_without_test_data_or_hparams_for_every_model_are_refused():
    evaluation, measures = random_study(n=4)
    results = {k: {n: SharpnessResult(n, v, 0.0) for n, v in m.items()}
               for k, m in measures.items()}  # fmt: skip
    train_only = {k: {"train_loss": 0.1, "train_accuracy": 0.9} for k in evaluation}
    with pytest.raises(ValueError, match="no gap_accuracy: run compare_checkpoints with test"):
        correlate(Comparison(train_only, results, {}))
    with pytest.raises(ValueError, match=r"no hyperparameters for the models \['m3'\]"):
        correlate(Comparison(evaluation, results, {}), {f"m{k}": {"lr": k} for k in range(3)})
    with pytest.raises(ValueError, match="gap must be"):
        correlate(Comparison(evaluation, results, {}), gap="error")


def test_cli_correlate_writes_the_tables_and_the_figure(tmp_path, capsys):
    evaluation, measures = random_study(n=8)
    path = comparison_file(tmp_path / "compare.h5", evaluation, measures)
    hparams = tmp_path / "hparams.csv"
    with open(hparams, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["checkpoint", "lr", "batch_size"])
        for k, label in enumerate(evaluation):
            writer.writerow([label, ["0.1", "0.01"][k % 2], ["32", "256", "64", "128"][k // 2]])
    assert read_hparams(hparams)["m3"] == {"lr": "0.01", "batch_size": "256"}
    out = tmp_path / "out"
    argv = ["correlate", str(path), "--hparams", str(hparams), "--out", str(out),
            "--num-bootstrap", "100"]  # fmt: skip
    assert main(argv) == 0
    with open(out / "correlation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["measure"] for r in rows] == ["trace", "rise"]
    assert list(rows[0])[:5] == ["measure", "tau", "tau_low", "tau_high", "granulated_tau"]
    expected = correlate(path, hparams, num_bootstrap=100)
    assert float(rows[0]["tau"]) == expected.tau["trace"]
    assert (out / "correlation.md").read_text().startswith("| measure | tau [95% interval]")
    assert (out / "correlation.png").stat().st_size > 0
    assert "| trace |" in capsys.readouterr().out
    assert main(["correlate", str(tmp_path / "none.h5"), "--out", str(out)]) == 2
