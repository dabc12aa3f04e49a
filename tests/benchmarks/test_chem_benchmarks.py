"""The molecule benchmarks (Tox21, Biogen ADME, the missing-rate sweep) run end to end at smoke
size and write their outputs; without ../shared/data they skip with a message and exit 0. The
sweep's label-hiding rules are checked on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import DATA, assert_skip_without_data, smoke_runs

SCRIPTS = ("tox21", "biogen", "missing_rate")
OUTPUTS = {
    "tox21": ["results.json", "results.md"],
    "biogen": ["results.json", "results.md"],
    "missing_rate": ["results.json", "results.md", "missing_rate.png"],
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """All three smoke runs, started together (they spend much of their time importing)."""
    pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent")
    root = tmp_path_factory.mktemp("chem_bench")
    return smoke_runs(SCRIPTS, root)


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_writes_its_outputs(smoke: dict[str, tuple[Path, str]], script: str) -> None:
    out_dir, stdout = smoke[script]
    for name in OUTPUTS[script]:
        assert (out_dir / name).stat().st_size > 0, name
    report = json.loads((out_dir / "results.json").read_text())
    assert report["runs"] and report["summary"]
    assert "total" in stdout


def test_tox21_smoke_covers_both_splits_and_all_methods(
    smoke: dict[str, tuple[Path, str]],
) -> None:
    report = json.loads((smoke["tox21"][0] / "results.json").read_text())
    assert set(report["summary"]) == {
        f"{split}/{method}"
        for split in ("random", "scaffold")
        for method in ("masked", "fill_negative", "single_task")
    }
    for run in report["runs"]:
        assert len(run["auc"]) == 3  # the smoke run's assays
        for value in run["auc"].values():
            assert value is None or 0.0 <= value <= 1.0


def test_biogen_smoke_reports_every_endpoint_metric(smoke: dict[str, tuple[Path, str]]) -> None:
    report = json.loads((smoke["biogen"][0] / "results.json").read_text())
    for cell in report["summary"].values():
        for endpoint in ("HLM", "RLM", "MDR1_ER", "Sol", "hPPB", "rPPB"):
            for metric in ("r2", "pearson_r", "mae"):
                assert f"{endpoint}/{metric}" in cell
    assert sum(report["match_counts"]["HLM"].values()) > 0


def test_missing_rate_smoke_reports_the_targets(smoke: dict[str, tuple[Path, str]]) -> None:
    report = json.loads((smoke["missing_rate"][0] / "results.json").read_text())
    assert set(report["targets"]) == {"mcar_drop_at_50", "mnar_masked_minus_fill_at_50"}
    methods = {row["method"] for row in report["summary"]}
    assert methods == {"masked", "fill_negative", "drop_rows", "single_task"}


def test_without_data_each_benchmark_skips_with_a_message(tmp_path: Path) -> None:
    assert_skip_without_data(SCRIPTS, tmp_path)
