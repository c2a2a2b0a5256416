"""The error raised for problems in what a user gave us: a data file, a row in it, an option.

The CLI turns :class:`InputError` into exit code 2 and its message on one line; any other
exception is a bug and keeps its traceback. The Rust readers raise it too (mapped in
``rust/bindings/errors.rs``), with the location as attributes, never only as text.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user mistake, with where it was found: ``file``, ``row`` (instance index), ``field``
    (a path such as ``output[1].score``) and ``byte`` (offset in the file).

    ``str(error)`` reads ``data.jsonl: row 12 (byte 3456), field 'output[1].score': must be a
    finite number, got 'abc'``, the parts that are known, in that order.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        byte: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.field = field
        self.byte = byte
        location = []
        if row is not None:
            location.append(f"row {row}" + ("" if byte is None else f" (byte {byte})"))
        elif byte is not None:
            location.append(f"byte {byte}")
        if field is not None:
            location.append(f"field '{field}'")
        parts = [part for part in (file, ", ".join(location), message) if part]
        super().__init__(": ".join(parts))
