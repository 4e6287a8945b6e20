"""The command line: `fimkit demo` and `fimkit --version`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import fimkit as fk
from fimkit.cli import app
from tests.results import references as ref

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert fk.__version__ in result.output


def test_demo_reports_null_direction_and_half_life(tmp_path):
    out = tmp_path / "demo.json"
    result = runner.invoke(app, ["demo", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Not identifiable" in result.output
    assert "0.577·CL + 0.577·V + 0.577·D" in result.output
    assert "Half-life" in result.output
    payload = json.loads(out.read_text())
    assert payload["full"]["rank"] == 2
    np.testing.assert_allclose(
        payload["d_known"]["eigenvalues"], ref.PK_BOLUS_D_KNOWN_EIGENVALUES, rtol=1e-8
    )
    np.testing.assert_allclose(payload["half_life"]["value"], 5 * np.log(2), rtol=1e-12)


def test_example_command():
    result = runner.invoke(app, ["example", "rooney_biegler", "--scale", "lin"])
    assert result.exit_code == 0, result.output
    assert "Wald" in result.output


def test_persistent_cache_is_written_and_can_be_disabled(tmp_path):
    code = (
        "import fimkit as fk; ex = fk.examples.rooney_biegler(); "
        "fk.fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise)"
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "FIMKIT_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert cache.is_dir() and any(cache.iterdir())
    env["FIMKIT_CACHE_DIR"] = ""
    probe = (
        "import fimkit._jax as j, jax; print(j.cache_dir(), jax.config.jax_compilation_cache_dir)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True
    )
    assert out.stdout.split()[0] == "None"


def test_cpu_dispatch_is_synchronous_unless_asked_otherwise():
    probe = "import fimkit, jax; print(jax.config.values['jax_cpu_enable_async_dispatch'])"
    for value, expected in ((None, "False"), ("1", "True")):
        env = {k: v for k, v in os.environ.items() if k != "FIMKIT_ASYNC_DISPATCH"}
        if value is not None:
            env["FIMKIT_ASYNC_DISPATCH"] = value
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True
        )
        assert out.stdout.strip() == expected


def test_programs_use_the_classic_cpu_fusion_emitter_unless_asked_otherwise(monkeypatch):
    import jax
    import jax.numpy as jnp

    from fimkit import _jax

    if jax.default_backend() != "cpu":
        pytest.skip("the option is for XLA's CPU backend")
    monkeypatch.delenv("FIMKIT_XLA_FUSION_EMITTERS", raising=False)
    assert _jax._compiler_options() == {"xla_cpu_use_fusion_emitters": False}
    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(
        _jax.jit(lambda v: jnp.sum(jnp.exp(v) / (1 + v)))(x),
        np.sum(np.exp(np.linspace(0, 1, 5)) / (1 + np.linspace(0, 1, 5))),
        rtol=1e-14,
    )
    monkeypatch.setenv("FIMKIT_XLA_FUSION_EMITTERS", "1")
    assert _jax._compiler_options() is None


@pytest.mark.parametrize("declared", [(3,), (2,)])
def test_two_programs_compute_the_composition(declared):
    """`TwoPrograms` runs second(x, y, *first(x)), compiled on two threads; a wrong declaration of
    the first program's output shape only costs a second compilation."""
    import jax
    import jax.numpy as jnp

    from fimkit import _jax

    def first(x):
        return (jnp.cumsum(x),)

    def second(x, y, c):
        return jnp.sum(c * y) + x[0]

    middle = [jax.ShapeDtypeStruct(declared, jnp.float64)]
    program = _jax.TwoPrograms(_jax.jit(first), _jax.jit(second), middle)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    expected = np.sum(np.cumsum(x) * y) + x[0]
    for _ in range(2):
        np.testing.assert_allclose(float(program(x, y)), expected, rtol=1e-15)
