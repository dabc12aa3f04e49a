"""The throughput benchmark runs end to end at smoke size and reports every figure it promises."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"

RATES = {
    "seed000": [
        f"{name}_samples_per_{unit}"
        for name in ("hand", "taskmask", "taskmask_train_metrics")
        for unit in ("s", "cpu_s")
    ],
    "wide": ["trainer_samples_per_s", "trainer_samples_per_cpu_s"],
}
STEPS = [f"step_ms_{name}{clock}" for name in ("masked", "plain") for clock in ("", "_cpu")]
OVERHEADS = ["masked_overhead_pct", "masked_overhead_pct_cpu"]
PRINTED = ("set_num_threads(1)", "taskmask / hand", "masked vs plain", "Trainer.fit", "peak RSS")


def _positive(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "throughput.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text()), run.stdout


def test_rates_are_positive_and_finite(smoke: tuple[dict[str, Any], str]) -> None:
    results, _ = smoke
    for section, keys in RATES.items():
        for key in keys:
            assert _positive(results[section][key]), (section, key, results[section].get(key))
    for key in STEPS:
        assert _positive(results["wide"][key]), (key, results["wide"].get(key))


@pytest.mark.parametrize("clock", ["s", "cpu_s"])
def test_ratios_are_the_quotients_of_the_rates(
    smoke: tuple[dict[str, Any], str], clock: str
) -> None:
    seed = smoke[0]["seed000"]
    suffix = "" if clock == "s" else "_cpu"
    hand = seed[f"hand_samples_per_{clock}"]
    for key, name in (("taskmask", "taskmask"), ("train_metrics", "taskmask_train_metrics")):
        ratio = seed[f"ratio_{key}_over_hand{suffix}"]
        assert _positive(ratio)
        assert ratio == pytest.approx(seed[f"{name}_samples_per_{clock}"] / hand, rel=1e-9)


def test_wide_overheads_follow_from_step_times(smoke: tuple[dict[str, Any], str]) -> None:
    wide = smoke[0]["wide"]
    for key in OVERHEADS:
        assert math.isfinite(wide[key]), (key, wide[key])
    masked, plain = wide["step_ms_masked"], wide["step_ms_plain"]
    assert wide["masked_overhead_pct"] == pytest.approx(100 * (masked - plain) / plain)
    assert _positive(wide["trainer_over_bare_step"])


def test_environment_memory_and_printout(smoke: tuple[dict[str, Any], str]) -> None:
    results, stdout = smoke
    assert results["environment"]["threads"] == 1
    assert results["environment"]["torch"]
    assert _positive(results["peak_rss_mib"])
    assert results["peak_rss_mib"] >= results["seed000"]["peak_rss_mib"]
    for line in PRINTED:
        assert line in stdout, line
