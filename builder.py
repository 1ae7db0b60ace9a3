"""The ``builder`` command line: generate an ML inference service from ``vars.yaml``.

Only the CLI lives here; :func:`builder_core.build` does the work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from builder_core import BuilderError, BuildResult, __version__, build
from builder_core.patterns import load_pattern, pattern_names

LOCAL_VARIABLES = Path("vars.yaml")
DEFAULT_PATTERN = "web-single"
PATH = click.Path(path_type=Path)


def _list_patterns(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name in pattern_names():
        click.echo(f"{name:<16} {load_pattern(name).info.description}")
    ctx.exit(0)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", help="Service name (a DNS-1123 label); wins over `name` in the variables.")
@click.option("--pattern", default=DEFAULT_PATTERN, show_default=True, help="Serving pattern.")
@click.option(
    "--variable-file",
    "--variable_file",
    "variable_file",
    type=PATH,
    help="Variables file [default: ./vars.yaml if present, else the packaged one].",
)
@click.option(
    "--correspond-file-path",
    "--correspond_file_path",
    "correspond_file_path",
    type=PATH,
    help="Template → output path mapping replacing the common one.",
)
@click.option(
    "--output-dir",
    "output_dir",
    type=PATH,
    default=Path(),
    show_default=True,
    help="Folder the service folder is created in.",
)
@click.option("--model", type=PATH, help="Your ONNX model to serve instead of the sample model.")
@click.option("--labels", type=PATH, help="Label file (JSON) for --model.")
@click.option("--force", is_flag=True, help="Replace an existing service folder.")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option(
    "--list-patterns",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_patterns,
    help="List the patterns with a line of description each.",
)
@click.version_option(__version__, prog_name="builder")
def cli(
    name: str | None,
    pattern: str,
    variable_file: Path | None,
    correspond_file_path: Path | None,
    output_dir: Path,
    model: Path | None,
    labels: Path | None,
    force: bool,
    dry_run: bool,
) -> None:
    """Generate a production-ready ML inference service from one vars.yaml."""
    if variable_file is None and LOCAL_VARIABLES.is_file():
        variable_file = LOCAL_VARIABLES
    try:
        result = build(
            name=name,
            pattern=pattern,
            variable_file=variable_file,
            correspond_file_path=correspond_file_path,
            output_dir=output_dir,
            model=model,
            labels=labels,
            force=force,
            dry_run=dry_run,
        )
    except BuilderError as err:
        click.secho(f"error: {err}", fg="red", err=True)
        sys.exit(err.exit_code)
    except Exception as err:
        if os.environ.get("BUILDER_DEBUG"):
            raise
        click.secho(
            f"error: unexpected {type(err).__name__}: {err} (BUILDER_DEBUG=1 shows more)",
            fg="red",
            err=True,
        )
        sys.exit(1)
    _report(result)


def _report(result: BuildResult) -> None:
    if not result.written:
        for item in result.files:
            click.echo(f"{item.action:<6} {result.target / item.path}  <- {item.source}")
        click.echo(f"dry run: {len(result.files)} files planned, nothing written")
        return
    click.echo(
        f"Generated the {result.pattern} service {result.variables.name!r} in {result.target} "
        f"({len(result.files)} files)."
    )
    click.echo(f"Next: cd {result.target} && ./run.sh   (see its README.md)")


def main() -> None:
    """Entry point of the ``builder`` command and ``python -m builder``."""
    cli(prog_name="builder")


if __name__ == "__main__":
    main()
