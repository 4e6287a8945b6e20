"""The `fimkit` command: run the bundled examples and show what a modeller needs to see."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from . import __version__

app = typer.Typer(
    help="fimkit: Fisher information, identifiability and design of experiments.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

EXAMPLES = {
    "pk_bolus": "One-compartment IV bolus (closed form)",
    "pk_bolus_ode": "One-compartment IV bolus (ODE, dose as a design bolus)",
    "pk_oral": "One-compartment oral absorption (closed form)",
    "pk_oral_ode": "One-compartment oral absorption (ODE)",
    "pk_two_compartment": "Two-compartment IV, infusion then bolus (ODE)",
    "rooney_biegler": "Rooney–Biegler regression",
    "kinase_cascade": "Kinase cascade, 6 states, 8 parameters (ODE)",
}


def _version(value: bool) -> None:
    if value:
        console.print(f"fimkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fimkit: how much can an experiment teach about a model's parameters?"""


def _matrix_table(title: str, names, m) -> Table:
    t = Table(title=title)
    t.add_column("")
    for n in names:
        t.add_column(n, justify="right")
    for n, row in zip(names, m, strict=True):
        t.add_row(n, *(f"{v:.5g}" for v in row))
    return t


def _fim_report(F, *, alpha: float = 0.05) -> None:
    from .errors import SingularFIMError
    from .information.fim import format_direction

    scale = "log θ" if F.scale == "log" else "θ"
    console.print(_matrix_table(f"Fisher information about {scale}", F.names, F.matrix))
    eig = F.eigen()
    console.print(
        "Eigenvalues: "
        + ", ".join(f"{w:.6g}" for w in eig.values)
        + f"   rank {F.rank()} of {F.size}"
    )
    try:
        ci = F.conf_int(alpha)
    except SingularFIMError:
        null = F.null_space()
        for j in range(null.shape[1]):
            console.print(
                f"[bold red]Not identifiable[/]: moving along [bold]"
                f"{format_direction(null[:, j], F.names)}[/] (on the {F.scale} scale) leaves every "
                "prediction unchanged, so the standard errors are infinite."
            )
        return
    rse = F.rse()
    level = f"{100 * (1 - alpha):g}%"
    t = Table(title=f"Cramér–Rao bounds and {level} Wald intervals")
    for c in (
        "parameter",
        "value",
        "SE" if F.scale == "lin" else "SE(log)",
        "RSE %",
        "lower",
        "upper",
    ):
        t.add_column(c, justify="right")
    for j, n in enumerate(F.names):
        t.add_row(
            n,
            f"{ci.estimate[j]:.5g}",
            f"{ci.se[j]:.4g}",
            f"{rse[n]:.3g}",
            f"{ci.lower[j]:.5g}",
            f"{ci.upper[j]:.5g}",
        )
    console.print(t)


@app.command()
def demo(
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write the results as JSON here."
    ),
) -> None:
    """The one-compartment IV bolus example, end to end.

    C(t) = D/V·exp(−CL/V·t), sampled at 0.5, 1, 2, 4, 8, 12 h with additive noise σ = 1.
    """
    import jax.numpy as jnp

    from . import delta_method, examples, fisher_information

    ex = examples.pk_bolus()
    console.rule("[bold]fimkit demo: one-compartment IV bolus")
    console.print(
        "C(t) = D/V·exp(−CL/V·t); theta = "
        + ", ".join(f"{k}={v:g}" for k, v in ex.theta.items())
        + "; times "
        + ", ".join(f"{t:g}" for t in ex.design.times)
        + " h; noise σ = 1"
    )
    F = fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale="log")
    console.rule("All three parameters (CL, V, D) estimated")
    _fim_report(F)
    console.print(
        "Only D/V (the initial concentration) and CL/V (the elimination rate) reach the data."
    )
    console.rule("D known (the dose given): CL and V estimated")
    Fk = F.select(["CL", "V"])
    _fim_report(Fk)
    half = delta_method(lambda p: jnp.log(2.0) * p["V"] / p["CL"], ex.theta, Fk)
    console.print(
        f"Half-life t½ = ln 2·V/CL = {float(half.value):.4g} h, delta-method SE {float(half.se):.3g} h, "
        f"95% interval [{float(half.lower):.4g}, {float(half.upper):.4g}] h"
    )
    if json_out is not None:
        payload = {
            "full": F.to_dict(),
            "d_known": Fk.to_dict(),
            "intervals": Fk.conf_int().to_dict(),
            "half_life": {
                "value": float(half.value),
                "se": float(half.se),
                "lower": float(half.lower),
                "upper": float(half.upper),
            },
        }
        json_out.write_text(json.dumps(payload, indent=2))
        console.print(f"Wrote {json_out}")


@app.command()
def example(
    name: str = typer.Argument(..., help="One of: " + ", ".join(EXAMPLES)),
    scale: str = typer.Option("log", help="'lin' or 'log' parameters."),
) -> None:
    """Compute and show the Fisher information of a bundled example."""
    from . import examples, fisher_information

    if name not in EXAMPLES:
        console.print(f"[red]Unknown example {name!r}[/]; choose one of: {', '.join(EXAMPLES)}")
        raise typer.Exit(2)
    if scale not in ("lin", "log"):
        console.print(f"[red]Unknown scale {scale!r}[/]; choose 'lin' or 'log'.")
        raise typer.Exit(2)
    ex = getattr(examples, name)()
    console.rule(f"[bold]{EXAMPLES[name]}")
    F = fisher_information(ex.model, ex.theta, ex.design, noise=ex.noise, scale=scale)
    _fim_report(F)


@app.command("examples")
def list_examples() -> None:
    """List the bundled examples."""
    for k, v in EXAMPLES.items():
        console.print(f"[bold]{k}[/]: {v}")
