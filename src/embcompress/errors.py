"""One exception type for every input the user can fix; the CLI prints it as one line."""


class EmbcompressError(ValueError):
    """A bad input. The message says what is wrong and how to fix it, on one line."""
