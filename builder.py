"""The ``builder`` command line: generate an ML inference service from ``vars.yaml``.

``builder [options]`` generates; ``builder upgrade``, ``builder check``, ``builder explain``,
``builder export-cookiecutter`` and ``builder test-pattern`` work on generated projects and
patterns. Only the CLI lives here; :mod:`builder_core` does the work.
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
from builder_core.pattern_ci import Step, run_pattern_tests
from builder_core.patterns import (
    PATTERN_PATH_ENV,
    Found,
    find_patterns,
    load_pattern,
    read_info,
    search_path,
)
from builder_core.upgrade import CheckResult, UpgradeResult, check, upgrade

LOCAL_VARIABLES = Path("vars.yaml")
DEFAULT_PATTERN = "web-single"
PATH = click.Path(path_type=Path)
T = TypeVar("T")


# Folders of patterns of your own; on the group (for generating and listing) and on every command
# that finds a pattern by name. The group's come first, then the command's, then the variable's.
PATTERN_PATH = click.option(
    "--pattern-path",
    "pattern_path",
    type=PATH,
    multiple=True,
    metavar="DIR",
    help=f"A folder of patterns of your own, DIR/<pattern>/ (repeatable; searched before "
    f"{PATTERN_PATH_ENV}, a {os.pathsep}-separated list).",
)


def _search_path(own: tuple[Path, ...]) -> tuple[Path, ...]:
    """The pattern path: the group's --pattern-path, the command's, then BUILDER_PATTERN_PATH."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    given = own if root is ctx else (*root.params.get("pattern_path", ()), *own)
    return search_path(given, os.environ)


def _list_patterns(folders: tuple[Path, ...]) -> None:
    for item in find_patterns(folders):
        where = "packaged" if item.search_dir is None else str(item.folder)
        click.echo(f"{item.name:<16} {_description(item)}  [{where}]")


def _description(item: Found) -> str:
    """A pattern's description, or why it is not used or cannot be read."""
    if item.note:
        return item.note
    try:
        return " ".join(read_info(item.folder).description.split())
    except BuilderError as err:
        return f"cannot be used: {err}"


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", help="Service name (a DNS-1123 label); wins over `name` in the variables.")
@click.option("--pattern", default=DEFAULT_PATTERN, show_default=True, help="Serving pattern.")
@PATTERN_PATH
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
    help="List the patterns with a line of description each and where each comes from.",
)
@click.version_option(__version__, prog_name="builder")
@click.pass_context
def cli(
    ctx: click.Context,
    name: str | None,
    pattern: str,
    pattern_path: tuple[Path, ...],
    variable_file: Path | None,
    correspond_file_path: Path | None,
    output_dir: Path,
    model: Path | None,
    labels: Path | None,
    force: bool,
    dry_run: bool,
    list_patterns: bool,
) -> None:
    """Generate a production-ready ML inference service from one vars.yaml.

    Without a command, generates a service. The commands work on generated projects and patterns.
    """
    if list_patterns:
        _guarded(lambda: _list_patterns(_search_path(pattern_path)))
        ctx.exit(0)
    if ctx.invoked_subcommand is not None:
        _refuse_generation_options(ctx)
        return
    chosen_file = _variables(variable_file)
    result = _guarded(
        lambda: _explained(
            chosen_file is not None and variable_file is None,
            pattern_path=_search_path(pattern_path),
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
        # The pattern path is for the commands too: they read it from here.
        if param.name
        and param.name != "pattern_path"
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
@PATTERN_PATH
@TEMPLATE_ROOT
@HISTORY_ROOT
def upgrade_command(
    project: Path,
    dry_run: bool,
    settings: dict[str, str],
    pattern_path: tuple[Path, ...],
    template_root: Path | None,
    history_root: Path | None,
) -> None:
    """Merge the current templates' changes into PROJECT, keeping your edits.

    A project generated from a pattern of your own needs its folder in the pattern path, as when
    it was generated. Exit status: 0 merged cleanly, 3 merged with conflicts (the files are
    listed; resolve the <<<<<<< markers), 2 the project cannot be upgraded as it is, 1 anything
    else. A failure changes nothing.
    """
    result = _guarded(
        lambda: upgrade(
            project,
            dry_run=dry_run,
            overrides=settings,
            template_root=template_root,
            history_root=history_root,
            pattern_path=_search_path(pattern_path),
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
@PATTERN_PATH
@TEMPLATE_ROOT
@HISTORY_ROOT
def check_command(
    project: Path,
    pattern_path: tuple[Path, ...],
    template_root: Path | None,
    history_root: Path | None,
) -> None:
    """Tell whether PROJECT is current with the templates (for CI).

    A project generated from a pattern of your own needs its folder in the pattern path. Exit
    status: 0 current, 1 the templates have moved on (what changed is printed), 2 cannot tell
    (the message says why).
    """
    result = _guarded(
        lambda: check(
            project,
            template_root=template_root,
            history_root=history_root,
            pattern_path=_search_path(pattern_path),
        ),
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
@PATTERN_PATH
@click.argument("destination", type=PATH)
def export_command(
    pattern: str,
    variable_file: Path | None,
    force: bool,
    pattern_path: tuple[Path, ...],
    destination: Path,
) -> None:
    """Write PATTERN as a cookiecutter template into DESTINATION (a new folder).

    A pattern of your own is exported with builder's bases it extends: the export stands alone.
    """
    result = _guarded(
        lambda: export_cookiecutter(
            pattern=pattern,
            destination=destination,
            variable_file=_variables(variable_file),
            force=force,
            pattern_path=_search_path(pattern_path),
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
@PATTERN_PATH
def explain_command(pattern: str, pattern_path: tuple[Path, ...]) -> None:
    """Show where each file of PATTERN comes from: common, extended, replaced or added."""
    folders = _guarded(lambda: _search_path(pattern_path))
    chosen = _guarded(lambda: load_pattern(pattern, pattern_path=folders))
    origins = _guarded(lambda: explain(pattern, pattern_path=folders))
    if chosen.external:
        prefix = chosen.layers[-1].prefix
        click.echo(f"pattern {pattern} from {chosen.folder} (its files are named {prefix}...)")
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


@cli.command("test-pattern")
@click.argument("folder", type=PATH)
@click.option(
    "--keep",
    type=PATH,
    metavar="DIR",
    help="Generate into DIR (new or empty) and keep the project and its .venv for inspection.",
)
def test_pattern_command(folder: Path, keep: Path | None) -> None:
    """Generate the pattern in FOLDER (a DIR/<pattern>/) with its sample variables and check it.

    The checks: every file renders and parses; the manifests pass kubernetes-validate (strict);
    every Dockerfile passes hadolint; the project's own tests pass in a fresh virtualenv (uv).
    The tools come with: pip install 'builder[pattern-test]'. Exit status: 0 every check passed,
    1 a check failed, 2 FOLDER is not a pattern or an option is wrong.
    """
    steps = _guarded(lambda: run_pattern_tests(folder, keep=keep, report=_report_step))
    failed = sum(step.status == "FAIL" for step in steps)
    skipped = sum(step.status == "SKIP" for step in steps)
    if not failed and not skipped:
        click.echo(f"All {len(steps)} checks passed.")
        sys.exit(0)
    click.echo(
        f"{failed} of {len(steps)} checks failed" + (f", {skipped} not run." if skipped else ".")
    )
    sys.exit(1)


def _report_step(step: Step) -> None:
    click.echo(f"{step.status} {step.name:<10} {step.reason}")
    for line in step.details:
        click.echo(f"    {line}")


def main() -> None:
    """Entry point of the ``builder`` command and ``python -m builder``."""
    cli(prog_name="builder")


if __name__ == "__main__":
    main()
