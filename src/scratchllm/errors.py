"""The one exception type for bad input that the user can fix (a file, a key, a shape).

The CLI prints these as a single line on stderr and exits with status 1, without a traceback.
"""
from contextlib import contextmanager


class ScratchLLMError(Exception):
    """Bad input: the message names the file, key or shapes at fault."""


class FileFormatError(ScratchLLMError, ValueError):
    """A file whose contents are not what its reader expects (the message names the file and field).

    Also a ``ValueError``, which the tokenizer readers raised before it existed.
    """


@contextmanager
def reading(path, what: str = "file"):
    """Turn the OS's errors while reading ``path`` into one ``ScratchLLMError`` that names it.

    >>> with reading("nope.txt", "text file"):
    ...     open("nope.txt").read()
    Traceback (most recent call last):
    scratchllm.errors.ScratchLLMError: nope.txt: text file not found
    """
    try:
        yield
    except FileNotFoundError:
        raise ScratchLLMError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ScratchLLMError(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as e:
        raise ScratchLLMError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ScratchLLMError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
