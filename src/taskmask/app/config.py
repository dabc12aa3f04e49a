"""Run configs: the YAML file that ``taskmask train`` reads, validated before any training.

```yaml
data:
  train: train.csv          # CSV, Parquet or NPZ; relative paths are relative to this file
  validation: val.csv       # optional; without it, `validation_split` of the training rows
  test: test.csv            # optional; reported in metrics.json, never used for any choice
  validation_split: 0.2     # default 0.2 without a validation file, 0 with one (or stream)
  split_seed: 0             # seed of that split; default: training.seed
  features: [x0, x1]        # columns; for NPZ, array keys (a 2-D array gives several columns)
  smiles: {column: smiles, kind: morgan, n_bits: 2048}  # optional: features from SMILES
  id_columns: [smiles]      # optional: columns copied first into predictions (`predict`)
  stream: false             # true: stream `train` (a Parquet file or directory) batch by batch
  shuffle_buffer: 100000    # rows; with stream: true only (docs/streaming.md)
tasks:                      # each entry: the fields of `taskmask.Task`, plus where its labels are
  - {name: toxic, kind: binary}                               # column defaults to the name
  - {name: scene, kind: multilabel, columns: [sea, sunset]}   # labels default to the columns
  - {name: color, kind: multiclass, column: colour}
  - {name: std, kind: regression, generator: std, auxiliary: true, weight: 0.1}  # from inputs
  - {from_columns: ["NR-*", "SR-*"], exclude: [SR-MMP], pos_weight: balanced}  # one per column
model:
  trunk: {hidden: [64, 64], dropout: 0.1}   # `taskmask.MLPConfig`; `type: cnn1d` / `cnn2d` for CNNs
training: {epochs: 20, lr: 0.01, batch_size: 256, seed: 0}    # `taskmask.TrainConfig`
#   scheduler: {type: cosine, warmup_epochs: 2}    # `taskmask.training.Schedule`
plugins: [my_kinds]         # modules imported first, e.g. to register task kinds
trackers: {tensorboard: tb} # and/or mlflow: {...}; see `taskmask.app.trackers`
standardize: true           # per feature (true, "feature") or per channel ("channel") scaling
tune_thresholds: false      # fit per-label thresholds on the validation data: true (= f1),
                            # f1, youden, precision:0.9 or recall:0.8 (`taskmask.tune_thresholds`)
search: {...}               # `taskmask tune` only (`taskmask.app.search`, docs/tune.md)
```

A ``from_columns`` entry becomes one task per matching column of ``data.train`` (its kind given
or inferred: `taskmask.app.expand`); the config saved in a run lists them one by one.
Unknown keys are errors. `load_config` turns every problem into a `TaskmaskError` whose message
names the file and the YAML path (``tasks[1] (task 'scene').kind``) of each problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from taskmask.app.applicable import applicable
from taskmask.app.expand import expand_tasks
from taskmask.app.overrides import apply_overrides
from taskmask.app.plugins import import_plugins
from taskmask.app.search import SearchConfig
from taskmask.app.trackers import Trackers
from taskmask.data.chem import SmilesFeatures
from taskmask.data.tables import file_type
from taskmask.errors import TaskmaskError, validation_message
from taskmask.functional._thresholds import parse_objective
from taskmask.model._trunks import MLPConfig, TrunkConfig
from taskmask.tasks._task import Task, check_unique_names, get_kind, known_kinds
from taskmask.training._trainer import TrainConfig

DEFAULT_VALIDATION_SPLIT = 0.2


class DataConfig(BaseModel):
    """Where the rows come from; ``features`` may be one string (an NPZ array key).
    ``split_seed`` fixes the validation split apart from the training seed (as `compare` does
    so that every variant and seed sees the same split). ``smiles`` computes features from a
    SMILES column (`taskmask.data.chem.SmilesFeatures`, needs the ``chem`` extra); they come before
    the ``features`` columns, which may then be left out. ``stream: true`` trains from ``train``
    (a Parquet file or a directory of them) read batch by batch, with a shuffle buffer of
    ``shuffle_buffer`` rows (`taskmask.data`); validation and test files are read whole,
    and there is no validation split."""

    model_config = ConfigDict(extra="forbid")

    train: Path
    validation: Path | None = None
    test: Path | None = None
    validation_split: float | None = Field(default=None, ge=0.0, lt=1.0)
    split_seed: int | None = None
    features: tuple[str, ...] = ()
    smiles: SmilesFeatures | None = None
    id_columns: tuple[str, ...] = ()
    stream: bool = False
    shuffle_buffer: int | None = Field(default=None, ge=0)

    @field_validator("features", "id_columns", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        repeated = sorted({f for f in self.features if self.features.count(f) > 1})
        if repeated:
            raise ValueError(f"features are listed more than once: {repeated}")
        if self.validation is not None and self.validation_split:
            raise ValueError("give a validation file or a validation_split, not both")
        if not self.features and self.smiles is None:
            raise ValueError("give features (columns or NPZ arrays), smiles, or both")
        if self.smiles is not None and self.smiles.column in self.features:
            raise ValueError(f"the SMILES column {self.smiles.column!r} is also a feature")
        if self.stream:
            self._check_stream()
        elif self.shuffle_buffer is not None:
            raise ValueError("shuffle_buffer applies to stream: true only")
        return self

    def _check_stream(self) -> None:
        if file_type(self.train) in (".csv", ".csv.gz", ".csv.bz2", ".npz"):
            raise ValueError("stream: true reads Parquet: a .parquet file or a directory of them")
        if self.smiles is not None:
            raise ValueError("stream: true reads feature columns; SMILES features need all rows")
        if self.validation_split:
            raise ValueError("stream: true has no validation_split; give a validation file")

    @property
    def split_fraction(self) -> float:
        """The fraction of training rows held out for validation (see the module docstring)."""
        if self.validation_split is not None:
            return self.validation_split
        return 0.0 if self.validation is not None or self.stream else DEFAULT_VALIDATION_SPLIT

    def resolved(self, base: Path) -> DataConfig:
        """Absolute paths (relative ones taken from ``base``) and an explicit split."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else (base / path.expanduser()).resolve()

        return self.model_copy(
            update={
                "train": absolute(self.train),
                "validation": absolute(self.validation),
                "test": absolute(self.test),
                "validation_split": self.split_fraction,
            }
        )


class TaskSpec(Task):
    """A `Task` plus where its labels are: ``column`` (one column or NPZ array, default the
    task's name) or ``columns`` (several; the labels of a multilabel or regression task default
    to their names), or ``generator``: a `taskmask.data.auxiliary` target generator (``std``,
    ``sum_abs_changes``, ``fourier`` with ``generator_options: {k: 8}``) computed from the
    inputs once per file, for a regression task."""

    column: str | None = None
    columns: tuple[str, ...] | None = Field(default=None, min_length=1)
    generator: str | None = None
    generator_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_labels(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and _per_column(data.get("kind"))
            and isinstance(data.get("columns"), list | tuple)
            and data.get("labels") is None
            and data.get("n_outputs") is None
        ):
            return {**data, "labels": data["columns"]}
        return data

    @model_validator(mode="after")
    def _check_source(self) -> TaskSpec:
        where = f"task {self.name!r}"
        if self.column is not None and self.columns is not None:
            raise ValueError(f"{where}: give column or columns, not both")
        if self.generator is not None:
            from taskmask.data.auxiliary import GENERATORS

            if self.column is not None or self.columns is not None:
                raise ValueError(f"{where}: a generated target reads no column")
            if self.spec.targets != "values":
                raise ValueError(f"{where}: generated targets are regression targets")
            if self.generator not in GENERATORS:
                raise ValueError(
                    f"{where}: unknown generator {self.generator!r}; choose one of "
                    f"{sorted(GENERATORS)}"
                )
        if self.columns is not None and self.label_columns == 1 and not self.spec.per_column:
            if len(self.columns) != 1:
                raise ValueError(
                    f"{where}: a {self.kind} task reads one column, not {self.columns}"
                )
        elif self.columns is not None and len(self.columns) != self.width:
            raise ValueError(
                f"{where}: {len(self.columns)} columns for {self.width} outputs {self.output_names}"
            )
        return self

    @property
    def source(self) -> str | tuple[str, ...]:
        """One column name (labels as stored) or several (stacked side by side)."""
        return self.columns if self.columns is not None else (self.column or self.name)

    def to_task(self) -> Task:
        fields = {"column", "columns", "generator", "generator_options"}
        return Task.model_validate(self.model_dump(exclude=fields))


class ModelSettings(BaseModel):
    """The network: its trunk (`taskmask.model.TrunkConfig`, picked by ``type``; an MLP
    without one)."""

    model_config = ConfigDict(extra="forbid")

    trunk: TrunkConfig = MLPConfig()


class RunConfig(BaseModel):
    """A whole ``taskmask train`` run (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    tasks: tuple[TaskSpec, ...] = Field(min_length=1)
    model: ModelSettings = ModelSettings()
    training: TrainConfig = TrainConfig()
    standardize: bool | Literal["feature", "channel"] = True
    tune_thresholds: bool | str = False
    plots: Literal["all", "summary", "none"] = "summary"

    @field_validator("tune_thresholds")
    @classmethod
    def _objective(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            parse_objective(value, where="tune_thresholds")
        return value

    @property
    def threshold_objective(self) -> str | None:
        """The objective thresholds are tuned for, None when they are not tuned."""
        if isinstance(self.tune_thresholds, str):
            return self.tune_thresholds
        return "f1" if self.tune_thresholds else None

    search: SearchConfig | None = None
    plugins: tuple[str, ...] = ()
    trackers: Trackers = Trackers()

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        from taskmask.weighting import WEIGHTINGS

        check_unique_names(self.tasks)
        if self.training.validation_split:
            raise ValueError("set data.validation_split, not training.validation_split")
        if self.training.weighting not in WEIGHTINGS:
            raise ValueError(
                f"unknown training.weighting {self.training.weighting!r}; "
                f"choose one of {sorted(WEIGHTINGS)}"
            )
        for spec in self.tasks:
            if spec.generator is not None and self.data.stream:
                raise ValueError(f"task {spec.name!r}: a generated target needs all rows in memory")
            if spec.generator is not None:
                continue
            shared = sorted(set(self.data.features) & set(_as_tuple(spec.source)))
            if shared:
                raise ValueError(f"task {spec.name!r}: columns {shared} are also features")
        if self.tune_thresholds and not (self.data.validation or self.data.split_fraction):
            raise ValueError("tune_thresholds needs validation data (a file or validation_split)")
        return self

    def task_list(self) -> list[Task]:
        return [spec.to_task() for spec in self.tasks]

    def train_config(self, *, progress: bool | None) -> TrainConfig:
        return self.training.model_copy(update={"progress": progress})

    def resolved(self, tasks: Sequence[Task]) -> RunConfig:
        """This config with each task's column and its label (or class) names filled in, and
        the seed of the validation split."""
        by_name = {task.name: task for task in tasks}
        specs = []
        for spec in self.tasks:
            update: dict[str, Any] = {}
            if spec.column is None and spec.columns is None and spec.generator is None:
                update["column"] = spec.name
            if spec.labels is None:
                update["labels"] = by_name[spec.name].output_names
            specs.append(spec.model_copy(update=update))
        data = self.data
        if data.split_seed is None and data.split_fraction:
            data = data.model_copy(update={"split_seed": self.training.seed})
        return self.model_copy(update={"tasks": tuple(specs), "data": data})

    def to_yaml(self) -> str:
        """The settings that apply (`taskmask.app.applicable`), as YAML that loads back to
        this config."""
        return yaml.safe_dump(applicable(self.model_dump(mode="json")), sort_keys=False)


def _per_column(kind: Any) -> bool:
    """Whether ``kind`` names a registered kind with one output per label column."""
    return isinstance(kind, str) and kind in known_kinds() and get_kind(kind).per_column


def _as_tuple(source: str | tuple[str, ...]) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else source


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # untyped yaml
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (plain PyYAML keeps the
    last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the constructor reports it
                continue
            if earlier is not key_node:
                line = earlier.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {line})", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds; `TaskmaskError` naming the file (and line) otherwise,
    a key given twice in one mapping included."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskmaskError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TaskmaskError(f"{path}: config file not readable ({error})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise TaskmaskError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
    if not isinstance(raw, dict):
        raise TaskmaskError(
            f"{path}: expected a mapping with keys {list(RunConfig.model_fields)}, "
            f"got {type(raw).__name__}"
        )
    return raw


def yaml_problem(error: yaml.YAMLError) -> str:
    """A one-line account of a YAML error: where and what."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        what = " ".join(str(part) for part in (error.context, error.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(error).split())


def load_config(path: str | Path, *, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config, set ``overrides`` (``KEY=VALUE``, `taskmask.app.overrides`), import
    its ``plugins``, validate it; data paths come back absolute (see `DataConfig`)."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides)
    source = f"{path} (with --set {' '.join(overrides)})" if overrides else path
    raw = expand_tasks(raw, path.parent, source=source)
    import_plugins(raw, source)
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as error:
        raise TaskmaskError(format_validation_error(error, source=source, raw=raw)) from None
    data, trackers = config.data.resolved(path.parent), config.trackers.resolved(path.parent)
    return config.model_copy(update={"data": data, "trackers": trackers})


def format_validation_error(error: ValidationError, *, source: str | Path, raw: Any = None) -> str:
    """One line per problem of a run config, led by its YAML path (`taskmask.errors`)."""
    return validation_message(error, source=source, raw=raw, root=RunConfig)
