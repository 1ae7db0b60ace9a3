"""Every failure the generator reports to a user.

Each class says when it is raised. All derive from :class:`BuilderError`, so the CLI needs exactly
one error boundary; ``exit_code`` follows the CLI contract: 2 for invalid input or usage, else 1.
``builder upgrade`` and ``builder check`` add the outcomes below, which are results, not errors.
"""

from __future__ import annotations

EXIT_OUTDATED = 1
"""``builder check``: the templates have moved on since the project was generated or upgraded."""
EXIT_CANNOT_TELL = 2
"""``builder check``: whether the project is current cannot be told (the message says why)."""
EXIT_CONFLICTS = 3
"""``builder upgrade``: the merge was written, but the files listed hold conflict markers."""


class BuilderError(Exception):
    """Base class: the message is one line meant for the user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInputError(BuilderError):
    """Something the user gave (a file, an option, a value) cannot be used as it is."""

    exit_code = 2


class VariablesError(InvalidInputError):
    """``vars.yaml`` cannot be read, or one of its keys is missing, unknown or invalid."""


class MappingError(InvalidInputError):
    """A ``correspond_file_path.yaml`` cannot be read or names a template that does not exist."""


class ForbiddenPathError(InvalidInputError, ValueError):
    """A rendered output path is absolute, empty or leaves the output folder."""


class ModelFileError(InvalidInputError):
    """A model or label file cannot be read, or does not agree with the variables."""


class UnknownPatternError(InvalidInputError):
    """``--pattern`` names no pattern the generator has, packaged or in the pattern path."""


class PatternPathError(InvalidInputError):
    """A pattern-path folder (``--pattern-path``, ``BUILDER_PATTERN_PATH``) cannot be used.

    It does not exist, is not a folder, or holds a pattern with a packaged pattern's name.
    """


class PatternError(InvalidInputError):
    """A pattern from the pattern path is inconsistent: its pattern.yaml, a template, or a file.

    The same mistakes in a packaged pattern are a :class:`PackagingError` (a broken builder); in a
    team's pattern they are the team's input, so they exit 2.
    """


class OutputExistsError(InvalidInputError):
    """The output folder exists and ``--force`` was not given."""


class TemplateError(BuilderError):
    """A template failed to render (an undefined variable, a syntax error)."""


class GeneratedFileError(BuilderError):
    """A rendered file does not parse: Python that does not compile, invalid YAML or JSON."""


class PackagingError(BuilderError):
    """The generator's own template data is missing or inconsistent (a broken installation)."""


class ToolMissingError(BuilderError):
    """A tool a check needs (hadolint, kubernetes-validate, uv) is not installed."""


class WriteError(BuilderError):
    """The output could not be written (permissions, disk full); nothing was left behind."""


class AnswersError(InvalidInputError):
    """A project's ``.builder-answers.yml`` is missing, unreadable or not what builder wrote."""


class TemplateVersionError(InvalidInputError):
    """A project's template version cannot be upgraded from (too old, unknown, or newer)."""


class UpgradeError(InvalidInputError):
    """A project cannot be upgraded as it is (its model changed, a path is not a file)."""
