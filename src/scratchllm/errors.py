"""The one exception type for bad input that the user can fix (a file, a key, a shape).

The CLI prints these as a single line on stderr and exits with status 1, without a traceback.
"""


class ScratchLLMError(Exception):
    """Bad input: the message names the file, key or shapes at fault."""
