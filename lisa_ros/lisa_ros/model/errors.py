"""Errors of the LISA core that callers are expected to catch and show to a person."""


class LisaLoadError(RuntimeError):
    """A model could not be loaded; the message is one line that says what to do about it."""


class LisaOutOfMemoryError(RuntimeError):
    """Inference ran out of accelerator memory; the model is intact, ready for the next request."""
