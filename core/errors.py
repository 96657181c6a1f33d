"""Errors the user can act on. The CLI prints their message as one line and exits non-zero;
anything else escaping is a bug and keeps its traceback."""


class DeepfakeError(Exception):
    """Base of every error that is the input's or the environment's fault, not ours."""


class MediaError(DeepfakeError):
    """A video or image sequence that is missing, unreadable, corrupt or truncated."""


class FacesetError(DeepfakeError):
    """A faceset folder that is missing, of another version, inconsistent or not ours."""


class AlignerError(DeepfakeError):
    """A face aligner backend that cannot be loaded (missing package or weights)."""
