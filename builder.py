"""The ``builder`` command line: generate an ML inference service from ``vars.yaml``.

``builder [options]`` generates; ``builder upgrade``, ``builder check`` and
``builder export-cookiecutter`` work on generated projects and patterns. Only the CLI lives here;
:mod:`builder_core` does the work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from builder_core import BuilderError, BuildResult, __version__, build
from builder_core.cookiecutter_export import export_cookiecutter
from builder_core.errors import (
    EXIT_CANNOT_TELL,
    EXIT_CONFLICTS,
    EXIT_OUTDATED,
    InvalidInputError,
    VariablesError,
)
from builder_core.generate import explain
from builder_core.patterns import load_pattern, pattern_names
from builder_core.upgrade import CheckResult, UpgradeResult, check, upgrade

LOCAL_VARIABLES = Path("vars.yaml")
DEFAULT_PATTERN = "web-single"
PATH = click.Path(path_type=Path)
T = TypeVar("T")


def _list_patterns(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name in pattern_names():
        click.echo(f"{name:<16} {load_pattern(name).info.description}")
    ctx.exit(0)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--force",
    is_flag=True,
    help="Generate anew over a folder builder made; the old one is moved aside, not deleted.",
)
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
@click.pass_context
def cli(
    ctx: click.Context,
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
    """Generate a production-ready ML inference service from one vars.yaml.

    Without a command, generates a service. The commands work on generated projects.
    """
    if ctx.invoked_subcommand is not None:
        _refuse_generation_options(ctx)
        return
    chosen_file = _variables(variable_file)
    result = _guarded(
        lambda: _explained(
            chosen_file is not None and variable_file is None,
            name=name,
            pattern=pattern,
            variable_file=chosen_file,
            correspond_file_path=correspond_file_path,
            output_dir=_output_dir(output_dir),
            model=model,
            labels=labels,
            force=force,
            dry_run=dry_run,
        )
    )
    _report(result)


def _explained(implicit: bool, **options: Any) -> BuildResult:
    """:func:`build`, saying where the variables came from when ./vars.yaml was picked silently."""
    try:
        return build(**options)
    except VariablesError as err:
        if not implicit:
            raise
        hint = "read from ./vars.yaml in the current folder; --variable-file chooses another"
        raise VariablesError(f"{err} ({hint})") from err


def _output_dir(output_dir: Path) -> Path:
    """``--output-dir``, refused up front when it names something other than a folder."""
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidInputError(f"--output-dir {output_dir}: not a folder")
    return output_dir


def _variables(variable_file: Path | None) -> Path | None:
    """The variables file given, else ./vars.yaml if there is one (else the packaged one)."""
    if variable_file is None and LOCAL_VARIABLES.is_file():
        return LOCAL_VARIABLES
    return variable_file


def _refuse_generation_options(ctx: click.Context) -> None:
    given = [
        param.opts[0]
        for param in ctx.command.params
        if param.name
        and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: generation options, not for 'builder {ctx.invoked_subcommand}'"
        )


def _guarded(action: Callable[[], T], *, failure_code: int | None = None) -> T:
    """The one error boundary: a BuilderError or any surprise becomes one red line and an exit code.

    ``failure_code`` replaces every failure's own code (``builder check``: 2, cannot tell).
    """
    try:
        return action()
    except BuilderError as err:
        _fail(str(err), failure_code or err.exit_code)
    except Exception as err:
        if os.environ.get("BUILDER_DEBUG"):
            raise
        message = f"unexpected {type(err).__name__}: {err} (BUILDER_DEBUG=1 shows more)"
        _fail(message, failure_code or 1)


def _fail(message: str, code: int) -> NoReturn:
    # One line whatever the message quotes (YAML errors, OS errors), for logs and for grep.
    line = " ".join(part.strip() for part in message.splitlines())
    click.secho(f"error: {line}", fg="red", err=True)
    sys.exit(code)


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
    _report_previous(result.previous)
    click.echo(f"Next: cd {result.target} && ./run.sh   (see its README.md)")


def _report_previous(previous: Path | None) -> None:
    if previous is not None:
        click.echo(
            f"The folder that was there is now {previous}: nothing in it was deleted (edits, "
            "added files, .git). `builder upgrade` updates a project in place and keeps edits."
        )


# Where the current and the older templates are: for template development and tests, so hidden.
TEMPLATE_ROOT = click.option(
    "--template-root", type=PATH, hidden=True, help="Current template data to upgrade to."
)
HISTORY_ROOT = click.option(
    "--history-root", type=PATH, hidden=True, help="Folder of older template versions."
)


def _settings(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    settings = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {text!r}")
        settings[key.strip()] = value
    return settings


@cli.command("upgrade")
@click.argument("project", type=PATH)
@click.option("--dry-run", is_flag=True, help="Show the diff of every file; write nothing.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_settings,
    help="Change a variable while upgrading (repeatable).",
)
@TEMPLATE_ROOT
@HISTORY_ROOT
def upgrade_command(
    project: Path,
    dry_run: bool,
    settings: dict[str, str],
    template_root: Path | None,
    history_root: Path | None,
) -> None:
    """Merge the current templates' changes into PROJECT, keeping your edits.

    Exit status: 0 merged cleanly, 3 merged with conflicts (the files are listed; resolve the
    <<<<<<< markers), 2 the project cannot be upgraded as it is, 1 anything else. A failure
    changes nothing.
    """
    result = _guarded(
        lambda: upgrade(
            project,
            dry_run=dry_run,
            overrides=settings,
            template_root=template_root,
            history_root=history_root,
        )
    )
    _report_upgrade(result)
    sys.exit(EXIT_CONFLICTS if result.conflicts else 0)


def _report_upgrade(result: UpgradeResult) -> None:
    if result.dry_run:
        for item in result.files:
            if item.changes_disk:
                click.echo(item.diff(), nl=False)
    for key in result.dropped_variables:
        click.echo(f"note: variable {key!r} is no longer used by the templates; dropped")
    for item in result.files:
        where = f"{item.moved_from} -> {item.path}" if item.moved_from else str(item.path)
        click.echo(f"  {item.status:<12} {where}")
    versions = f"template {result.from_version} -> {result.to_version}"
    changed = sum(item.changes_disk for item in result.files)
    if result.dry_run:
        click.echo(f"dry run ({versions}): {changed} files would change, nothing written")
    else:
        click.echo(f"Upgraded {result.project} ({versions}): {changed} files changed.")
    if result.conflicts:
        click.secho("Conflicts: resolve the <<<<<<< markers in:", fg="yellow", err=True)
        for path in result.conflicts:
            click.secho(f"  {result.project / path}", fg="yellow", err=True)


@cli.command("check")
@click.argument("project", type=PATH)
@TEMPLATE_ROOT
@HISTORY_ROOT
def check_command(project: Path, template_root: Path | None, history_root: Path | None) -> None:
    """Tell whether PROJECT is current with the templates (for CI).

    Exit status: 0 current, 1 the templates have moved on (what changed is printed),
    2 cannot tell (the message says why).
    """
    result = _guarded(
        lambda: check(project, template_root=template_root, history_root=history_root),
        failure_code=EXIT_CANNOT_TELL,
    )
    _report_check(result)
    sys.exit(0 if result.current else EXIT_OUTDATED)


def _report_check(result: CheckResult) -> None:
    if result.current:
        click.echo(f"{result.project}: current (template {result.current_version})")
        return
    click.echo(
        f"{result.project}: the templates moved on "
        f"({result.recorded_version} -> {result.current_version})"
    )
    for letter, path in result.changes:
        click.echo(f"  {letter} {path}")
    if not result.changes:
        click.echo("  (no file changes: only the recorded template version)")
    click.echo(f"Run: builder upgrade {result.project}")


@cli.command("export-cookiecutter")
@click.option("--pattern", default=DEFAULT_PATTERN, show_default=True, help="Pattern to export.")
@click.option(
    "--variable-file",
    "--variable_file",
    "variable_file",
    type=PATH,
    help="Variables whose values become the defaults [default: ./vars.yaml, else the packaged].",
)
@click.option("--force", is_flag=True, help="Replace an existing DESTINATION.")
@click.argument("destination", type=PATH)
def export_command(
    pattern: str, variable_file: Path | None, force: bool, destination: Path
) -> None:
    """Write PATTERN as a cookiecutter template into DESTINATION (a new folder)."""
    result = _guarded(
        lambda: export_cookiecutter(
            pattern=pattern,
            destination=destination,
            variable_file=_variables(variable_file),
            force=force,
        )
    )
    click.echo(
        f"Exported the {result.pattern} pattern as a cookiecutter template in "
        f"{result.destination} ({result.files} files, {len(result.prompts)} prompts)."
    )
    _report_previous(result.previous)
    click.echo(f"Use it: cookiecutter {result.destination}")


@cli.command("explain")
@click.argument("pattern")
def explain_command(pattern: str) -> None:
    """Show where each file of PATTERN comes from: common, extended, replaced or added."""
    origins = _guarded(lambda: explain(pattern))
    for origin in origins:
        detail = ""
        if origin.kind == "extended":
            detail = f"  blocks: {', '.join(origin.blocks) or '(none)'}"
        elif origin.kind == "replaced":
            detail = f"  why: {origin.reason}"
        elif origin.kind in ("extended", "added"):
            detail = f"  <- {origin.source}"
        click.echo(f"{origin.kind:<9} {origin.path}{detail}")
    counts = {
        kind: sum(o.kind == kind for o in origins)
        for kind in ("common", "extended", "replaced", "added", "omitted")
    }
    click.echo(", ".join(f"{number} {kind}" for kind, number in counts.items()))


def main() -> None:
    """Entry point of the ``builder`` command and ``python -m builder``."""
    cli(prog_name="builder")


if __name__ == "__main__":
    main()
