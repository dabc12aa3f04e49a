"""Side by side: several run configurations over several seeds, on the same data splits.

A compare file names a base run config and its variants:

```yaml
base: run.yaml               # a `taskmask train` config; relative to this file
seeds: [0, 1, 2]             # training seeds; every variant runs with each
split_seed: 0                # one validation split for every variant and seed
variants:
  baseline: {}
  uncertainty: {set: {training.weighting: uncertainty}}
  no_aux: {drop_tasks: [std, fourier]}
  other_model: {config: other.yaml, set: {tasks.age.weight: 0.5}}
metrics: [accuracy, f1_macro]  # optional: which metric keys to tabulate (default: summaries)
```

``set`` overrides dotted paths of the run config; ``tasks.NAME.FIELD`` addresses a task by
name. Results: ``results.csv`` (one row per variant, seed, task and metric), ``summary.csv``
and ``summary.md`` (mean +- std over seeds), ``comparison.png``, and each run's directory under
``runs/VARIANT/seed-K``. Test metrics are tabulated when the config has a test file, otherwise
validation metrics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskmask._io import atomic_directory
from taskmask.app.config import RunConfig, format_validation_error, read_yaml
from taskmask.app.overrides import set_dotted
from taskmask.app.plugins import import_plugins
from taskmask.app.runs import train_run
from taskmask.errors import TaskmaskError
from taskmask.functional._metrics import Undefined, summary_keys

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn
    from matplotlib.figure import Figure


class Variant(BaseModel):
    """One configuration: a run config (default: the base), overrides, tasks to leave out."""

    model_config = ConfigDict(extra="forbid")

    config: Path | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    drop_tasks: tuple[str, ...] = ()


class CompareConfig(BaseModel):
    """What `taskmask compare` reads (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    base: Path
    seeds: tuple[int, ...] = Field(default=(0, 1, 2), min_length=1)
    split_seed: int = 0
    variants: dict[str, Variant] = Field(min_length=1)
    metrics: tuple[str, ...] | None = None


def load_compare(path: str | Path) -> CompareConfig:
    """Read and validate a compare file; its paths come back relative to the working dir."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        config = CompareConfig.model_validate(raw)
    except ValidationError as error:
        raise TaskmaskError(format_validation_error(error, source=path)) from None
    base = path.parent
    variants = {
        name: v.model_copy(update={"config": None if v.config is None else base / v.config})
        for name, v in config.variants.items()
    }
    return config.model_copy(update={"base": base / config.base, "variants": variants})


def variant_config(
    name: str, variant: Variant, base: Path, *, seed: int, split_seed: int
) -> RunConfig:
    """The run config of ``variant`` for one training seed."""
    path = variant.config or base
    raw = copy.deepcopy(read_yaml(path))
    where = f"variant {name!r}"
    known = {task.get("name") for task in raw.get("tasks", []) if isinstance(task, dict)}
    unknown = sorted(set(variant.drop_tasks) - known)
    if unknown:
        raise TaskmaskError(f"{where}: drop_tasks names unknown tasks {unknown}")
    raw["tasks"] = [t for t in raw.get("tasks", []) if t.get("name") not in variant.drop_tasks]
    for dotted, value in variant.set.items():
        set_dotted(raw, dotted, value, where)
    set_dotted(raw, "training.seed", seed, where)
    set_dotted(raw, "data.split_seed", split_seed, where)
    import_plugins(raw, path)
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as error:
        raise TaskmaskError(format_validation_error(error, source=f"{path} ({where})")) from None
    return config.model_copy(update={"data": config.data.resolved(path.parent)})


def _rows(
    variant: str, seed: int, metrics: dict[str, Any], keys: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    part = "test" if "test" in metrics else "validation"
    rows = []
    for task, values in metrics[part].items():
        for key in keys or summary_keys(values):
            value = values.get(key)
            if value is None:
                continue
            defined = not isinstance(value, Undefined)
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "part": part,
                    "task": task,
                    "metric": key,
                    "value": float(value) if defined else float("nan"),
                }
            )
    return rows


def run_comparison(
    config: CompareConfig,
    out_dir: Path,
    *,
    progress: bool | None = False,
    report: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train every variant with every seed; write the results (see the module docstring)."""
    plans = {
        (name, seed): variant_config(
            name, variant, config.base, seed=seed, split_seed=config.split_seed
        )
        for name, variant in config.variants.items()
        for seed in config.seeds
    }  # every config is validated before the first run
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []

    def write(tmp: Path) -> None:
        for (name, seed), run_config in plans.items():
            if report is not None:
                report(f"{name}, seed {seed}")
            run = train_run(
                run_config, tmp / "runs" / name / f"seed-{seed}", progress=progress, plots=False
            )
            rows.extend(_rows(name, seed, run.metrics, config.metrics))
        results = pd.DataFrame(rows)
        summary = summarize(results)
        results.to_csv(tmp / "results.csv", index=False)
        summary.to_csv(tmp / "summary.csv", index=False)
        (tmp / "summary.md").write_text(to_markdown(summary), encoding="utf-8")
        plot_comparison(summary, tmp / "comparison.png")

    atomic_directory(out_dir, write)
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation and count over seeds per variant, task and metric;
    undefined values (NaN) are left out of both and counted in ``n_undefined``."""
    grouped = results.groupby(["variant", "task", "metric"], sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    summary["n_undefined"] = grouped.apply(lambda v: int(v.isna().sum())).to_numpy()
    return summary


def to_markdown(summary: pd.DataFrame) -> str:
    """A table: one row per variant, one column per task and metric, cells "mean ± std"."""
    cell = summary.assign(
        text=[
            f"{m:.4f} ± {s:.4f}" if pd.notna(s) else (f"{m:.4f}" if pd.notna(m) else "undefined")
            for m, s in zip(summary["mean"], summary["std"], strict=True)
        ],
        column=summary["task"] + " " + summary["metric"],
    )
    table = cell.pivot(index="variant", columns="column", values="text")
    table = table.reindex(index=list(dict.fromkeys(summary["variant"])))
    header = "| variant | " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * (len(table.columns) + 1)]
    for variant, row in table.iterrows():
        lines.append(f"| {variant} | " + " | ".join(str(v) for v in row.to_numpy()) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(summary: pd.DataFrame, path: Path, *, columns: int = 3) -> Path:
    """A grid of panels, one per task and metric (``columns`` a row): each variant's mean over
    seeds with its standard deviation as an error bar, on a y axis zoomed to the values (a
    panel of 0.98 against 1.00 shows the difference)."""
    comparison_figure(summary, columns=columns).savefig(path, dpi=100)
    return path


def comparison_figure(summary: pd.DataFrame, *, columns: int = 3) -> Figure:
    """The figure `plot_comparison` saves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys(zip(summary["task"], summary["metric"], strict=True)))
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False)
    for ax, (task, metric) in zip(grid.flat, panels, strict=False):
        part = summary[(summary["task"] == task) & (summary["metric"] == metric)]
        x = range(len(part))
        ax.errorbar(x, part["mean"], yerr=part["std"].fillna(0.0), fmt="o", capsize=4)
        ax.set_xticks(list(x), list(part["variant"]), rotation=30, ha="right")
        ax.set_xlim(-0.5, len(part) - 0.5)
        ax.margins(y=0.15)
        ax.set_title(task)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(grid.flat)[len(panels) :]:
        ax.set_visible(False)
    return figure
