"""The one exception type for bad input that the user can fix (a file, a key, a shape).

The CLI prints these as a single line on stderr and exits with status 1, without a traceback.
"""


class ScratchLLMError(Exception):
    """Bad input: the message names the file, key or shapes at fault."""


class FileFormatError(ScratchLLMError, ValueError):
    """A file whose contents are not what its reader expects (the message names the file and field).

    Also a ``ValueError``, which the tokenizer readers raised before it existed.
    """
