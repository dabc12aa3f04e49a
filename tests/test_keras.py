"""taskmask.keras: on the same predictions and targets, the Keras losses and metrics equal
taskmask's torch losses and its scikit-learn metrics (Keras on the torch backend)."""

import doctest
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ["KERAS_BACKEND"] = "torch"  # before keras is first imported: CI tests this backend
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - keras imported earlier elsewhere
    pytest.skip("keras was imported with another backend", allow_module_level=True)

import sklearn.metrics as skm  # noqa: E402
from torch.testing import assert_close  # noqa: E402

import taskmask.keras as tk  # noqa: E402
from taskmask.errors import TaskmaskError  # noqa: E402
from taskmask.functional import (  # noqa: E402
    Undefined,
    binary_metrics,
    masked_binary_cross_entropy_with_logits,
    masked_cross_entropy,
    masked_l1_loss,
    masked_mse_loss,
)

# torch 2.13's Tensor.__array__ takes no ``copy``, so numpy 2 warns whenever Keras's torch
# backend calls ``np.array(tensor)`` (predict, evaluate, convert_to_numpy): not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
ROOT = Path(__file__).resolve().parents[1]
TOL = {"rtol": 1e-5, "atol": 1e-6}
cases = settings(max_examples=25, deadline=None)


def _draw(seed: int, n: int, k: int, p_missing: float) -> tuple[torch.Tensor, ...]:
    """Logits ``(n, k)``, 0/1 targets and an observed mask, from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, k, generator=g)
    target = (torch.rand(n, k, generator=g) < 0.5).float()
    observed = torch.rand(n, k, generator=g) >= p_missing
    return logits, target, observed


def _with_missing(target: torch.Tensor, observed: torch.Tensor, value: float) -> torch.Tensor:
    return torch.where(observed, target, torch.full_like(target, value))


def _loss_and_grad(
    loss: keras.losses.Loss, y_true: torch.Tensor, y_pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Keras loss (torch backend) and its gradient with respect to ``y_pred``."""
    y_pred = y_pred.clone().requires_grad_(True)
    value = loss(y_true, y_pred)
    value.backward()
    return value.detach(), y_pred.grad


shapes = {
    "seed": st.integers(0, 2**16),
    "n": st.integers(1, 30),
    "k": st.integers(1, 4),
    "p_missing": st.sampled_from([0.0, 0.3, 0.8, 1.0]),
}


@cases
@given(**shapes)
def test_binary_crossentropy_equals_taskmask(seed: int, n: int, k: int, p_missing: float) -> None:
    logits, target, observed = _draw(seed, n, k, p_missing)
    z = logits.clone().requires_grad_(True)
    expected = masked_binary_cross_entropy_with_logits(z, target, observed)
    expected.backward()
    y_true = _with_missing(target, observed, -1.0)
    value, grad = _loss_and_grad(tk.MaskedBinaryCrossentropy(from_logits=True), y_true, logits)
    assert_close(value, expected.detach(), **TOL)
    assert_close(grad, z.grad, **TOL)
    assert torch.all(grad[~observed] == 0)
    assert observed.any() or value.item() == 0.0  # structural zero when nothing is observed
    probs = _loss_and_grad(tk.MaskedBinaryCrossentropy(), y_true, torch.sigmoid(logits))
    assert_close(probs[0], expected.detach(), **TOL)
    assert torch.all(probs[1][~observed] == 0)


@cases
@given(**shapes)
def test_regression_losses_equal_taskmask(seed: int, n: int, k: int, p_missing: float) -> None:
    preds, _, observed = _draw(seed, n, k, p_missing)
    target = torch.randn(n, k, generator=torch.Generator().manual_seed(seed + 1))
    y_true = _with_missing(target, observed, float("nan"))
    pairs = [
        (tk.MaskedMeanSquaredError(), masked_mse_loss),
        (tk.MaskedMeanAbsoluteError(), masked_l1_loss),
    ]
    for keras_loss, torch_loss in pairs:
        value, grad = _loss_and_grad(keras_loss, y_true, preds)
        z = preds.clone().requires_grad_(True)
        expected = torch_loss(z, target, observed)
        expected.backward()
        assert_close(value, expected.detach(), **TOL)
        assert_close(grad, z.grad, **TOL)
        assert torch.all(grad[~observed] == 0)


@cases
@given(**shapes)
def test_categorical_losses_equal_taskmask(seed: int, n: int, k: int, p_missing: float) -> None:
    n_classes = k + 1
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, n_classes, generator=g)
    target = torch.randint(0, n_classes, (n,), generator=g)
    observed = torch.rand(n, generator=g) >= p_missing
    z = logits.clone().requires_grad_(True)
    expected = masked_cross_entropy(z, target, observed)
    expected.backward()
    sparse = torch.where(observed, target, -1).float()
    one_hot = torch.where(observed[:, None], torch.eye(n_classes)[target], -1.0)
    for loss, y_true, y_pred in [
        (tk.MaskedSparseCategoricalCrossentropy(from_logits=True), sparse, logits),
        (tk.MaskedSparseCategoricalCrossentropy(), sparse[:, None], torch.softmax(logits, -1)),
        (tk.MaskedCategoricalCrossentropy(from_logits=True), one_hot, logits),
        (tk.MaskedCategoricalCrossentropy(), one_hot, torch.softmax(logits, -1)),
    ]:
        value, grad = _loss_and_grad(loss, y_true, y_pred)
        assert_close(value, expected.detach(), **TOL)
        assert torch.all(grad[~observed] == 0)
        assert observed.any() or value.item() == 0.0
        if loss.from_logits:
            assert_close(grad, z.grad, **TOL)


@pytest.mark.parametrize(
    "loss",
    [
        tk.MaskedBinaryCrossentropy(),
        tk.MaskedBinaryCrossentropy(from_logits=True),
        tk.MaskedMeanSquaredError(mask_value=-1),
        tk.MaskedMeanAbsoluteError(mask_value=-1),
    ],
    ids=lambda loss: f"{type(loss).__name__}",
)
def test_nothing_observed_gives_exact_zero_and_zero_gradients(loss: keras.losses.Loss) -> None:
    y_true = torch.tensor([[-1.0, float("nan")], [float("nan"), -1.0]])
    value, grad = _loss_and_grad(loss, y_true, torch.tensor([[0.3, 0.9], [0.2, 0.5]]))
    assert value.item() == 0.0 and value.ndim == 0
    assert torch.all(grad == 0)


def test_nan_and_mask_value_are_both_missing() -> None:
    logits, target, observed = _draw(0, 20, 3, 0.4)
    loss = tk.MaskedBinaryCrossentropy(from_logits=True)
    reference = _loss_and_grad(loss, _with_missing(target, observed, -1.0), logits)
    garbage = torch.tensor([float("nan"), -1.0, float("nan")]).repeat(20, 1)
    y_true = torch.where(observed, target, garbage)
    assert_close(_loss_and_grad(loss, y_true, logits), reference, rtol=0, atol=0)


def test_mask_value_is_configurable() -> None:
    logits, target, observed = _draw(1, 12, 3, 0.5)
    expected = masked_binary_cross_entropy_with_logits(logits, target, observed)
    loss = tk.MaskedBinaryCrossentropy(mask_value=9, from_logits=True)
    assert_close(loss(_with_missing(target, observed, 9.0), logits), expected, **TOL)
    regression = tk.MaskedMeanSquaredError()  # NaN only: -1 is a real regression target
    assert regression(torch.tensor([[-1.0]]), torch.tensor([[1.0]])).item() == 4.0


def test_sample_weight_scales_rows_divisor_stays_observed_count() -> None:
    y_true = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    y_pred = torch.tensor([[0.2, 0.5], [0.4, 0.7]])
    elementwise = torch.nn.functional.binary_cross_entropy(
        y_pred, y_true.clamp(min=0), reduction="none"
    )
    weights = torch.tensor([2.0, 0.5])
    expected = (2 * elementwise[0, 0] + 0.5 * elementwise[1].sum()) / 3
    value = tk.MaskedBinaryCrossentropy()(y_true, y_pred, sample_weight=weights)
    assert_close(value, expected, **TOL)


def test_mismatched_shapes_are_errors() -> None:
    with pytest.raises(TaskmaskError, match=r"y_true \(4, 1\) and y_pred \(4, 3\)"):
        tk.MaskedBinaryCrossentropy()(torch.zeros(4, 1), torch.zeros(4, 3))
    with pytest.raises(TaskmaskError, match="mask_value"):
        tk.MaskedBinaryCrossentropy(mask_value="-1")  # type: ignore[arg-type]
    with pytest.raises(TaskmaskError, match="average"):
        tk.MaskedBinaryAccuracy(average="weighted")
    # (N,) against (N, 1) is one label, as in Keras, not an (N, N) broadcast
    loss = tk.MaskedBinaryCrossentropy()
    assert_close(loss(torch.ones(3), torch.full((3, 1), 0.5)), torch.tensor(math.log(2)), **TOL)


def _two_output_model() -> keras.Model:
    inputs = keras.Input(shape=(4,))
    shared = keras.layers.Dense(8, activation="relu")(inputs)
    scene = keras.layers.Dense(2, activation="sigmoid", name="scene")(shared)
    age = keras.layers.Dense(1, name="age")(shared)
    return keras.Model(inputs, {"scene": scene, "age": age})


def test_compiled_model_loss_is_taskmask_weighted_sum() -> None:
    keras.utils.set_random_seed(0)
    model = _two_output_model()
    losses = {"scene": tk.MaskedBinaryCrossentropy(), "age": tk.MaskedMeanSquaredError()}
    model.compile(optimizer="adam", loss=losses, loss_weights={"scene": 1.0, "age": 0.5})
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    _, scene, seen = _draw(2, 16, 2, 0.3)
    age = torch.randn(16, 1, generator=torch.Generator().manual_seed(3))
    age_seen = torch.arange(16)[:, None] % 3 != 0
    y = {"scene": _with_missing(scene, seen, -1.0).numpy(), "age": np.where(age_seen, age, np.nan)}
    out = model.predict(x, verbose=0)
    logits = torch.logit(torch.as_tensor(out["scene"]).double()).float()
    expected = masked_binary_cross_entropy_with_logits(logits, scene, seen) + 0.5 * masked_mse_loss(
        torch.as_tensor(out["age"]), age, age_seen
    )
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert_close(torch.tensor(result["loss"]), expected, rtol=1e-4, atol=1e-5)


def test_output_without_labels_leaves_its_head_untouched() -> None:
    keras.utils.set_random_seed(0)
    model = _two_output_model()
    losses = {"scene": tk.MaskedBinaryCrossentropy(), "age": tk.MaskedMeanSquaredError()}
    model.compile(optimizer="adam", loss=losses)
    x = np.random.default_rng(1).random((8, 4)).astype("float32")
    y = {"scene": np.ones((8, 2), "float32"), "age": np.full((8, 1), np.nan, "float32")}
    before = [w.numpy().copy() for w in model.get_layer("age").weights]
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    after = [w.numpy() for w in model.get_layer("age").weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["age_loss"] == [0.0, 0.0]


def _metric_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs, target, observed = _draw(seed, 200, 3, 0.3)
    probs = torch.sigmoid(probs).numpy()
    probs[:5] = 0.5  # exactly at the threshold: positive, as in taskmask
    observed[:, 2] = False
    observed[:40, 2] = True
    return probs, target.numpy(), observed.numpy()


def test_binary_accuracy_equals_taskmask_metrics() -> None:
    probs, target, observed = _metric_data()
    y_true = np.where(observed, target, -1.0)
    expected = binary_metrics(probs, target, observed, labels=["a", "b", "c"], thresholds=[0.5] * 3)
    results = {}
    for average in ("micro", "macro", None):
        metric = tk.MaskedBinaryAccuracy(average=average)
        for rows in np.array_split(np.arange(200), 3):  # streaming equals one shot
            metric.update_state(y_true[rows], probs[rows])
        results[average] = keras.ops.convert_to_numpy(metric.result()).astype(np.float64)
    assert_close(results[None], np.array([expected[f"accuracy/{c}"] for c in "abc"]), **TOL)
    assert_close(float(results["macro"]), expected["accuracy_macro"], **TOL)
    pooled = skm.accuracy_score(target[observed], probs[observed] >= 0.5)
    assert_close(float(results["micro"]), pooled, **TOL)


def test_binary_accuracy_undefined_is_nan_and_reset_works() -> None:
    metric = tk.MaskedBinaryAccuracy(average=None)
    metric.update_state(np.array([[1.0, -1.0]]), np.array([[0.9, 0.1]]))
    result = keras.ops.convert_to_numpy(metric.result())
    assert result[0] == 1.0 and np.isnan(result[1])
    expected = binary_metrics(
        np.array([[0.9, 0.1]]),
        np.array([[1.0, 0.0]]),
        np.array([[True, False]]),
        labels=["a", "b"],
        thresholds=[0.5, 0.5],
    )
    assert isinstance(expected["accuracy/b"], Undefined)
    metric.reset_state()
    assert np.isnan(keras.ops.convert_to_numpy(metric.result())).all()
    assert np.isnan(float(tk.MaskedBinaryAccuracy().result()))


def test_auc_matches_scikit_learn_on_observed_labels() -> None:
    probs, target, observed = _metric_data(1)
    y_true = np.where(observed, target, -1.0)
    pooled = tk.MaskedAUC(num_thresholds=2000)
    per_label = tk.MaskedAUC(num_thresholds=2000, multi_label=True, num_labels=3)
    for metric in (pooled, per_label):
        metric.update_state(y_true, probs)
    expected = binary_metrics(probs, target, observed, labels=["a", "b", "c"], thresholds=[0.5] * 3)
    assert_close(float(per_label.result()), expected["roc_auc_macro"], rtol=0, atol=2e-3)
    exact = skm.roc_auc_score(target[observed], probs[observed])
    assert_close(float(pooled.result()), exact, rtol=0, atol=2e-3)


@pytest.mark.parametrize(
    "obj",
    [
        tk.MaskedBinaryCrossentropy(mask_value=-2, from_logits=True),
        tk.MaskedCategoricalCrossentropy(),
        tk.MaskedSparseCategoricalCrossentropy(from_logits=True),
        tk.MaskedMeanSquaredError(mask_value=-999),
        tk.MaskedMeanAbsoluteError(),
        tk.MaskedBinaryAccuracy(threshold=0.3, average=None),
        tk.MaskedAUC(mask_value=-2, multi_label=True),
    ],
    ids=lambda obj: type(obj).__name__,
)
def test_serialisation_round_trip(obj: object) -> None:
    config = keras.saving.serialize_keras_object(obj)
    assert config["registered_name"] == f"taskmask>{type(obj).__name__}"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(obj) and restored.get_config() == obj.get_config()


def test_saved_model_keeps_its_losses(tmp_path: Path) -> None:
    model = _two_output_model()
    model.compile(
        optimizer="adam",
        loss={"scene": tk.MaskedBinaryCrossentropy(mask_value=-2), "age": "mse"},
        metrics={"scene": [tk.MaskedBinaryAccuracy()]},
    )
    x = np.zeros((4, 4), "float32")
    model.fit(x, {"scene": np.full((4, 2), -2.0), "age": np.zeros((4, 1))}, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.loss["scene"].get_config()["mask_value"] == -2.0


def test_docstring_examples() -> None:
    modules = [tk, tk._masking, tk._losses, tk._metrics]
    assert sum(doctest.testmod(m, raise_on_error=False).attempted for m in modules) >= 9
    assert all(doctest.testmod(m, raise_on_error=False).failed == 0 for m in modules)


def test_missing_keras_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)
    for name in [m for m in sys.modules if m.split(".")[:2] == ["taskmask", "keras"]]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(TaskmaskError, match=r"taskmask\[keras\]"):
        import taskmask.keras  # noqa: F401


def test_importing_taskmask_leaves_keras_alone() -> None:
    code = "import sys, taskmask; assert 'keras' not in sys.modules"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_example_smoke_run() -> None:
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    script = ROOT / "examples" / "keras_seed000.py"
    run = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    rows = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines() if line}
    assert {"seed_loss", "masked_bce"} <= set(rows)
    for name in ("seed_loss", "masked_bce"):
        assert all(0.0 <= float(v) <= 1.0 for v in rows[name][:4])


def _blocks(page: str, language: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def _run_python_blocks(page: str) -> dict[str, object]:
    namespace: dict[str, object] = {"print": lambda *args, **kwargs: None}
    for block in _blocks(page, "python"):
        exec(compile(block, f"docs/{page}", "exec"), namespace)
    return namespace


def test_keras_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = _run_python_blocks("keras.md")
    accuracy = np.asarray(namespace["scores"]["masked_binary_accuracy"])  # type: ignore[index]
    assert accuracy.shape == (3,) and np.all((accuracy >= 0) & (accuracy <= 1))
    assert np.isfinite(namespace["history"].history["loss"]).all()  # type: ignore[attr-defined]


def test_from_keras_guide_runs_in_python_and_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskmask.app.cli import main

    monkeypatch.chdir(tmp_path)
    namespace = _run_python_blocks("from_keras.md")
    assert set(namespace["metrics"]) == {"toxic", "scene", "colour", "age"}  # type: ignore[arg-type]
    (config,) = _blocks("from_keras.md", "yaml")
    (command,) = _blocks("from_keras.md", "bash")
    (tmp_path / "run.yaml").write_text(config)
    argv = command.split()
    assert argv[0] == "taskmask"
    assert main([*argv[1:], "--quiet"]) == 0, capsys.readouterr().err
    assert (tmp_path / "runs" / "from-keras" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["evaluate", "runs/from-keras", "--data", "test.csv", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["toxic"]["n_observed"] > 0
    argv = ["predict", "runs/from-keras", "--data", "test.csv", "--out", "predictions.csv"]
    assert main(argv) == 0
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 101
