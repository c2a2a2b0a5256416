"""TRL's conversational preference format for pairs whose prompt is chat messages.

A scored prompt given as chat messages pairs into a message-list ``prompt`` beside plain-text
``chosen`` and ``rejected`` (LMFlow's ``paired_text_to_text``). TRL's ``DPOTrainer`` refuses
that mix (it adds the prompt's list to the completion's string), so every pair dpov2 writes or
hands on with chat prompts has its completions as one-message assistant conversations,
``[{"role": "assistant", "content": text}]``: the one place that turns them is here.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dpov2.arrays import from_numpy
from dpov2.formats.instances import COMPLETIONS

__all__ = ["as_conversational", "conversational_schema", "is_messages_type"]

ASSISTANT = "assistant"
#: The type of a completion turned into a conversation: what :func:`as_conversational` builds.
CONVERSATION_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def is_messages_type(kind: pa.DataType) -> bool:
    """A list column (chat messages, in a pair's ``prompt``, ``chosen`` or ``rejected``)."""
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _needs_turning(schema: pa.Schema) -> bool:
    return (
        "prompt" in schema.names
        and is_messages_type(schema.field("prompt").type)
        and all(
            name in schema.names and not is_messages_type(schema.field(name).type)
            for name in COMPLETIONS
        )
    )


def as_conversational(table: pa.Table) -> pa.Table:
    """``table`` with text ``chosen`` and ``rejected`` turned into one-message assistant
    conversations when its ``prompt`` is chat messages (built from the text buffers, no
    Python loop; a null text stays a null row); any other table as it is."""
    if not _needs_turning(table.schema):
        return table
    for name in COMPLETIONS:
        texts = table.column(name).combine_chunks()
        if not pa.types.is_string(texts.type):
            texts = texts.cast(pa.string())
        messages = pa.StructArray.from_arrays(
            [pa.repeat(ASSISTANT, len(texts)), texts.fill_null("")],
            names=["role", "content"],
        )
        offsets = from_numpy(np.arange(len(texts) + 1, dtype=np.int32))
        mask = texts.is_null() if texts.null_count else None
        column = pa.ListArray.from_arrays(offsets, messages, mask=mask)
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def conversational_schema(schema: pa.Schema) -> pa.Schema:
    """The schema :func:`as_conversational` gives tables of ``schema`` (built from the types:
    ``Schema.empty_table`` would import pandas)."""
    if not _needs_turning(schema):
        return schema
    for name in COMPLETIONS:
        index = schema.get_field_index(name)
        schema = schema.set(index, schema.field(name).with_type(CONVERSATION_TYPE))
    return schema
