"""One exception hierarchy for ocislim.

Every error a user can cause (bad input, hostile archive, missing tool, an
environment without user namespaces) is an :class:`OcislimError`.  Each class
carries the exit code that ``cli.py`` turns it into; nothing else exits.
Messages are one line and name the object at fault.
"""

from __future__ import annotations


class OcislimError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(OcislimError):
    """Wrong flags or arguments that click could not catch."""

    exit_code = 2


class RefNotFoundError(UsageError):
    """``--ref`` or ``--platform`` matched nothing (or several images need one); the
    image is fine, so this is a usage error.  The message lists what is there."""


class InputNotFoundError(OcislimError):
    """A file or directory named by the user does not exist or cannot be read."""

    exit_code = 3


class ImageError(OcislimError):
    """The image is malformed, unsupported or does not match its own digests."""

    exit_code = 4


class DigestError(ImageError):
    """A digest is malformed, uses an unknown algorithm, or does not match content."""


class BlobNotFoundError(ImageError):
    """A blob named by a descriptor is absent from the image."""


class CompressionError(ImageError):
    """A compressed stream is truncated or corrupt."""


class UnsafeArchiveError(OcislimError):
    """An archive tries to reach outside its destination or is otherwise hostile."""

    exit_code = 5


class SandboxError(OcislimError):
    """The sandbox could not be set up (namespaces, mounts, ptrace)."""

    exit_code = 6


class UserNamespaceUnavailableError(SandboxError):
    """Unprivileged user namespaces are disabled; the message names the setting."""


class VerificationError(OcislimError):
    """The slim image did not behave like the original."""

    exit_code = 7


class OutputError(OcislimError):
    """An output could not be written (exists, no space, permission)."""

    exit_code = 8
