"""The error types users see. The CLI turns each into one line and an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the `inferc` CLI (documented in the README)."""

    OK = 0
    INTERNAL = 1  # a bug: an unexpected exception
    USAGE = 2  # bad command line, bad input, bad recipe
    UNSUPPORTED = 3  # a valid request inferc or the target cannot do
    GATE_FAILED = 4  # the build finished but a quality or speed gate failed
    MISSING_DEPENDENCY = 5  # an optional package is needed and absent
    PUBLISH_FAILED = 6  # a publish or pull failed: registry refused or unreachable, content not matching its digest
    DISTRIBUTED = 7  # a distributed build lost a rank, timed out in a collective, or its ranks disagreed
    INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as a shell reports it
    TERMINATED = 143  # SIGTERM: 128 + 15


class InferCError(Exception):
    """Base of every error caused by user input or environment, not by a bug."""

    exit_code: ExitCode = ExitCode.USAGE


class RecipeError(InferCError):
    """A recipe file or preset that does not validate."""


class CheckpointError(InferCError):
    """A model directory or weight file that is missing, corrupt or inconsistent."""


class FormatError(InferCError):
    """Bytes that do not parse as the format they claim to be."""


class CalibrationError(InferCError):
    """Calibration data that is missing, too small or unusable."""


class UnsupportedError(InferCError):
    """A valid request that this architecture, format or target cannot do."""

    exit_code = ExitCode.UNSUPPORTED


class MissingDependencyError(InferCError):
    """An optional package is needed; the message carries the install command."""

    exit_code = ExitCode.MISSING_DEPENDENCY

    def __init__(self, package: str, purpose: str, install: str | None = None) -> None:
        cmd = install or f"pip install {package}"
        super().__init__(f"{purpose} needs the '{package}' package, which is not installed; run: {cmd}")
        self.package = package


class OutputDirError(InferCError):
    """An output path a build may not write or replace (not inferc's, or the current directory)."""


class OutputBusyError(InferCError):
    """Another build holds the output directory's lock."""


class DistributedError(InferCError):
    """A collective of a distributed build failed: another rank died, hung past the
    process group's timeout, or computed something different."""

    exit_code = ExitCode.DISTRIBUTED


class Terminated(BaseException):
    """SIGTERM arrived. The CLI's handler raises it so that `finally` blocks clean up, as
    they do for KeyboardInterrupt; like KeyboardInterrupt, no `except Exception` stops it."""

class PublishError(InferCError):
    """A publish or pull that the registry refused, could not reach, or whose bytes do not match their digest."""

    exit_code = ExitCode.PUBLISH_FAILED


class GateFailedError(InferCError):
    """One or more recipe quality/speed gates failed; the artifact is still written."""

    exit_code = ExitCode.GATE_FAILED


def require(module: str, package: str, purpose: str, install: str | None = None):
    """Import an optional dependency or raise MissingDependencyError with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, purpose, install) from exc
