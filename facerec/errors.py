"""Errors about the user's input or environment that a stage reports as one clear message."""


class PipelineInputError(Exception):
    """Expected problem (missing credentials, bad archive, bad params) with a fix in its message.

    Stages catch it, log the message without a traceback, and exit non-zero.
    """


class ParamsError(PipelineInputError, ValueError):
    """A params.yaml value or key is not allowed; the message names the key, the value and what is."""
