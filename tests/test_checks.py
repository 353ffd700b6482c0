"""Tests for mamlkit/lessons/checks.py and the notebook helpers in mamlkit/lessons/notebook.py."""

import json
from pathlib import Path

import pytest
import torch

from mamlkit.lessons.checks import check_close, compare_gradients, finite_difference_grad, raises
from mamlkit.lessons.notebook import main as notebook_cli
from mamlkit.lessons.notebook import show_source, smoke_test_from_env, strip_notebook

# ---------------------------------------------------------------- check_close


def test_check_close_passes_and_prints_one_tick_line(capsys):
    check_close(torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7], "v")
    out = capsys.readouterr().out
    assert out.startswith("✓ v: max |diff| = ") and out.count("\n") == 1


def test_check_close_accepts_tensors_that_require_grad(capsys):
    a = torch.tensor([2.0, 3.0], requires_grad=True)
    check_close(9 * a**2, torch.tensor([36.0, 81.0]), "9a²")
    assert "✓" in capsys.readouterr().out


def test_check_close_failure_shows_expected_got_and_maxdiff():
    with pytest.raises(AssertionError) as info:
        check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]), "a.grad")
    message = str(info.value)
    assert "a.grad" in message
    assert "expected: [1, 2.5]" in message
    assert "got:      [1, 2]" in message
    assert "max |diff| = 5.000e-01" in message


def test_check_close_failure_on_shape_mismatch():
    with pytest.raises(AssertionError, match=r"expected shape \(3,\), got shape \(2,\)"):
        check_close(torch.zeros(2), torch.zeros(3), "x")


def test_check_close_respects_tolerances():
    check_close(1.0 + 1e-3, 1.0, "loose", atol=1e-2)
    with pytest.raises(AssertionError):
        check_close(1.0 + 1e-3, 1.0, "tight", atol=1e-6, rtol=0.0)


# ---------------------------------------------------------------- compare_gradients


def test_compare_gradients_prints_exact_approximate_maxdiff(capsys):
    compare_gradients("dL/dθ", torch.tensor(-2.5625), torch.tensor(-2.5625 + 1e-10))
    out = capsys.readouterr().out
    assert out.startswith("✓ dL/dθ | exact: -2.5625 | approximate: -2.5625 | maxdiff: ")


def test_compare_gradients_summarises_large_tensors(capsys):
    g = torch.arange(12.0).reshape(3, 4)
    compare_gradients("W", g, g)
    assert "shape (3, 4)" in capsys.readouterr().out


def test_compare_gradients_failure_teaches():
    with pytest.raises(AssertionError) as info:
        compare_gradients("meta-gradient", torch.tensor(-5.125), torch.tensor(-2.5625))
    message = str(info.value)
    assert "gradients differ" in message and "exact:" in message and "approximate:" in message
    assert "create_graph=True" in message


# ---------------------------------------------------------------- finite_difference_grad


def test_finite_difference_grad_matches_autograd_in_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64).t()  # non-contiguous on purpose

    def f(t):
        return (t.sin() * t**2).sum()

    x_leaf = x.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(f(x_leaf), x_leaf)
    approx = finite_difference_grad(f, x)
    assert approx.dtype == torch.float64 and approx.shape == x.shape
    torch.testing.assert_close(approx, exact, atol=1e-8, rtol=1e-7)


def test_finite_difference_grad_of_float32_input_is_float64():
    approx = finite_difference_grad(lambda t: (t**3).sum(), torch.tensor([1.5], dtype=torch.float32))
    assert approx.dtype == torch.float64
    assert abs(approx.item() - 3 * 1.5**2) < 1e-8


def test_finite_difference_grad_lets_f_use_autograd():
    # f contains an inner gradient step, as the MAML meta-loss does.
    inner_lr = 0.1

    def f(theta):
        (g,) = torch.autograd.grad((theta**3).sum(), theta, create_graph=True)
        return ((theta - inner_lr * g) ** 2).sum()

    theta = torch.tensor([0.7, -0.4], dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(f(theta), theta)
    torch.testing.assert_close(finite_difference_grad(f, theta), exact, atol=1e-8, rtol=1e-7)


def test_finite_difference_grad_accepts_python_numbers_returned_by_f():
    approx = finite_difference_grad(lambda t: float(t.detach().item() ** 2), 3.0)
    assert abs(approx.item() - 6.0) < 1e-6


def test_finite_difference_grad_rejects_non_scalar_f():
    with pytest.raises(ValueError, match="must return a scalar"):
        finite_difference_grad(lambda t: t * 2, torch.zeros(2))


# ---------------------------------------------------------------- raises


def test_raises_passes_when_the_block_raises(capsys):
    with raises(RuntimeError, match="does not require grad"):
        torch.tensor(1.0).backward()
    assert capsys.readouterr().out.startswith("✓ raised RuntimeError: element 0 of tensors")


def test_raises_fails_when_nothing_is_raised():
    with pytest.raises(AssertionError, match="expected the block to raise ValueError"):
        with raises(ValueError):
            pass


def test_raises_fails_when_the_message_does_not_match():
    with pytest.raises(AssertionError, match="does not match"):
        with raises(ValueError, match="shape"):
            raise ValueError("wrong dtype")


def test_raises_lets_other_exceptions_through():
    with pytest.raises(KeyError):
        with raises(ValueError):
            raise KeyError("k")


def test_raises_shortens_long_messages(capsys):
    with raises(RuntimeError):
        raise RuntimeError("First sentence. " + "x" * 300)
    assert capsys.readouterr().out == "✓ raised RuntimeError: First sentence.\n"


# ---------------------------------------------------------------- SMOKE_TEST


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": ""}, False),
        ({"CI": "0"}, False),
        ({"CI": "false"}, False),
        ({"CI": "False"}, False),
        ({"MAMLKIT_SMOKE": "1"}, True),
        ({"MAMLKIT_SMOKE": "yes"}, True),
        ({"MAMLKIT_SMOKE": "0"}, False),
        ({"CI": "false", "MAMLKIT_SMOKE": "1"}, True),
        ({"OTHER": "1"}, False),
    ],
)
def test_smoke_test_from_env(env, expected):
    assert smoke_test_from_env(env) is expected


# ---------------------------------------------------------------- show_source


def test_show_source_prints_outside_ipython(capsys):
    show_source(check_close)
    out = capsys.readouterr().out
    assert out.startswith("# mamlkit.lessons.checks.check_close\n")
    assert "def check_close(" in out


# ---------------------------------------------------------------- strip_notebook


def _dirty_notebook() -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# 99 · Test"]},
            {
                "cell_type": "code",
                "id": "b",
                "execution_count": 3,
                "metadata": {"execution": {"iopub.status.busy": "2024-01-01"}, "scrolled": True, "tags": ["keep"]},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}],
                "source": ["print('hi')"],
            },
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11.7"},
            "widgets": {"state": {}},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_strip_notebook_removes_outputs_counts_and_volatile_metadata(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(_dirty_notebook()))

    assert strip_notebook(path) is True
    nb = json.loads(path.read_text())
    code = nb["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert code["metadata"] == {"tags": ["keep"]}
    assert code["source"] == ["print('hi')"]
    assert nb["metadata"] == {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }


def test_strip_notebook_is_idempotent(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(_dirty_notebook()))
    strip_notebook(path)
    cleaned = path.read_text()
    assert strip_notebook(path) is False
    assert path.read_text() == cleaned


def test_strip_cli(tmp_path, capsys):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(_dirty_notebook()))
    assert notebook_cli(["strip", str(path)]) == 0
    assert capsys.readouterr().out.startswith("stripped")
    notebook_cli(["strip", str(path)])
    assert capsys.readouterr().out.startswith("clean")


def test_show_mamlkit_origin_names_this_repository_and_warns_about_another(tmp_path, capsys):
    from mamlkit.lessons.notebook import mamlkit_origin, show_mamlkit_origin

    repo = Path(__file__).resolve().parents[1]
    assert show_mamlkit_origin(repo / "notebooks") is True
    assert capsys.readouterr().out == f"mamlkit: {repo / 'mamlkit'} (this repository)\n"
    other = tmp_path / "student"
    (other / "mamlkit").mkdir(parents=True)
    (other / "mamlkit/__init__.py").write_text("")
    (other / "notebooks").mkdir()
    assert mamlkit_origin(other / "notebooks") == (repo, other)
    assert show_mamlkit_origin(other / "notebooks") is False
    out = capsys.readouterr().out
    assert out.startswith(f"⚠ mamlkit was imported from {repo / 'mamlkit'}, but this notebook belongs to {other}")
