//! The column buffers rows are parsed into, and their Arrow arrays.
//!
//! Buffers are plain `Vec`s in Arrow's layout (32-bit offsets, values, one validity flag per
//! row), handed to Arrow without a copy. The columns of both schemas and both prompt kinds
//! live in one struct; a batch uses those of its schema and prompt kind.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, ListArray, NullArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, SchemaRef};

use super::{Problem, Schema};

/// What a prompt is: one string, or a list of chat messages `{role, content}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Text,
    Messages,
}

/// A Utf8 column: value `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug)]
pub(super) struct Utf8 {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
}

impl Utf8 {
    fn with_capacity(values: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(values + 1);
        offsets.push(0);
        Self {
            offsets,
            data: Vec::with_capacity(bytes),
        }
    }

    /// Ends the value whose bytes were appended to `data`. Data never exceeds the batch's
    /// input, which is kept under 2 GiB, so the offset fits.
    #[inline]
    pub fn end_value(&mut self) {
        self.offsets.push(self.data.len() as i32);
    }

    fn truncate(&mut self, mark: (usize, usize)) {
        self.offsets.truncate(mark.0);
        self.data.truncate(mark.1);
    }

    fn mark(&self) -> (usize, usize) {
        (self.offsets.len(), self.data.len())
    }

    fn append(&mut self, other: &Utf8) {
        shift_extend(&mut self.offsets, &other.offsets);
        self.data.extend_from_slice(&other.data);
    }

    fn reserve(&mut self, other: &Utf8) {
        self.offsets.reserve(other.offsets.len());
        self.data.reserve(other.data.len());
    }

    /// The Arrow array (the bytes are UTF-8: every run was validated, every escape decoded
    /// to a character, and values end at string ends).
    fn into_array(self, nulls: Option<NullBuffer>) -> StringArray {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // SAFETY: see above; the offsets start at 0, never decrease and end at data.len().
        unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(self.data), nulls) }
    }
}

/// Appends offsets that start at 0 after those in `offsets`.
fn shift_extend(offsets: &mut Vec<i32>, more: &[i32]) {
    let base = offsets.last().copied().unwrap_or(0);
    offsets.extend(more[1..].iter().map(|o| o + base));
}

/// The rows of a piece of a batch, and the problems of those that are null.
#[derive(Debug)]
pub(super) struct Columns {
    pub valid: Vec<bool>,
    pub prompt: Utf8,
    /// Per row, offsets into the messages (`roles`, `contents`).
    pub messages: Vec<i32>,
    pub roles: Utf8,
    pub contents: Utf8,
    /// Per row, offsets into the responses (`texts`, `scores`).
    pub outputs: Vec<i32>,
    pub texts: Utf8,
    pub scores: Vec<f64>,
    pub chosen: Utf8,
    pub rejected: Utf8,
    pub margin: Vec<f64>,
    pub margin_valid: Vec<bool>,
    pub problems: Vec<Problem>,
}

/// The lengths of every buffer at the start of a row, to roll a faulty row back.
pub(super) struct Mark {
    prompt: (usize, usize),
    roles: (usize, usize),
    contents: (usize, usize),
    texts: (usize, usize),
    scores: usize,
    chosen: (usize, usize),
    rejected: (usize, usize),
    margin: usize,
}

impl Columns {
    /// Room for `rows` rows parsed from `bytes` bytes of JSON of `schema` (a value is never
    /// longer than its JSON).
    pub fn with_capacity(schema: Schema, rows: usize, bytes: usize) -> Self {
        let mut messages = Vec::with_capacity(rows + 1);
        messages.push(0);
        let mut outputs = Vec::with_capacity(rows + 1);
        outputs.push(0);
        let (prompt, text, pair) = match schema {
            Schema::Scored => (bytes / 4, bytes, 0),
            Schema::Paired => (bytes / 4, 0, bytes / 2),
        };
        Self {
            valid: Vec::with_capacity(rows),
            prompt: Utf8::with_capacity(rows, prompt),
            messages,
            roles: Utf8::with_capacity(0, 0),
            contents: Utf8::with_capacity(0, 0),
            outputs,
            texts: Utf8::with_capacity(bytes / 256, text),
            scores: Vec::with_capacity(bytes / 256),
            chosen: Utf8::with_capacity(rows, pair),
            rejected: Utf8::with_capacity(rows, pair),
            margin: Vec::with_capacity(rows),
            margin_valid: Vec::with_capacity(rows),
            problems: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    pub fn mark(&self) -> Mark {
        Mark {
            prompt: self.prompt.mark(),
            roles: self.roles.mark(),
            contents: self.contents.mark(),
            texts: self.texts.mark(),
            scores: self.scores.len(),
            chosen: self.chosen.mark(),
            rejected: self.rejected.mark(),
            margin: self.margin.len(),
        }
    }

    /// Ends a row whose values were appended.
    pub fn end_row(&mut self) {
        self.valid.push(true);
        self.end_entries();
    }

    /// Drops what a faulty row appended since `mark` and adds it as a null row.
    pub fn null_row(&mut self, mark: Mark, problem: Problem) {
        self.prompt.truncate(mark.prompt);
        self.roles.truncate(mark.roles);
        self.contents.truncate(mark.contents);
        self.texts.truncate(mark.texts);
        self.scores.truncate(mark.scores);
        self.chosen.truncate(mark.chosen);
        self.rejected.truncate(mark.rejected);
        self.margin.truncate(mark.margin);
        self.margin_valid.truncate(mark.margin);
        self.margin.push(0.0);
        self.margin_valid.push(false);
        self.valid.push(false);
        self.end_entries();
        self.problems.push(problem);
    }

    /// The row-level offsets of every column (the margin is pushed by the row itself).
    fn end_entries(&mut self) {
        self.prompt.end_value();
        self.messages.push(self.roles.offsets.len() as i32 - 1);
        self.outputs.push(self.scores.len() as i32);
        self.chosen.end_value();
        self.rejected.end_value();
    }

    /// Appends the rows of each of `pieces`, in order, after these.
    pub fn append(&mut self, pieces: Vec<Columns>) {
        for piece in &pieces {
            self.prompt.reserve(&piece.prompt);
            self.roles.reserve(&piece.roles);
            self.contents.reserve(&piece.contents);
            self.texts.reserve(&piece.texts);
            self.chosen.reserve(&piece.chosen);
            self.rejected.reserve(&piece.rejected);
        }
        for piece in pieces {
            self.valid.extend_from_slice(&piece.valid);
            self.prompt.append(&piece.prompt);
            shift_extend(&mut self.messages, &piece.messages);
            self.roles.append(&piece.roles);
            self.contents.append(&piece.contents);
            shift_extend(&mut self.outputs, &piece.outputs);
            self.texts.append(&piece.texts);
            self.scores.extend_from_slice(&piece.scores);
            self.chosen.append(&piece.chosen);
            self.rejected.append(&piece.rejected);
            self.margin.extend_from_slice(&piece.margin);
            self.margin_valid.extend_from_slice(&piece.margin_valid);
            self.problems.extend(piece.problems);
        }
    }

    /// The record batch of `schema`, the prompt column of `kind` (a Null column while no row
    /// had a valid prompt: then every row is null).
    pub fn into_record_batch(self, schema: Schema, kind: Option<PromptKind>) -> RecordBatch {
        let rows = self.valid.len();
        let nulls = validity(self.valid);
        let prompt: ArrayRef = match kind {
            None => Arc::new(NullArray::new(rows)),
            Some(PromptKind::Text) => Arc::new(self.prompt.into_array(nulls.clone())),
            Some(PromptKind::Messages) => {
                let roles = self.roles.into_array(None);
                let contents = self.contents.into_array(None);
                let messages = StructArray::new(
                    message_fields(),
                    vec![Arc::new(roles), Arc::new(contents)],
                    None,
                );
                Arc::new(ListArray::new(
                    list_item(message_fields()),
                    OffsetBuffer::new(ScalarBuffer::from(self.messages)),
                    Arc::new(messages),
                    nulls.clone(),
                ))
            }
        };
        let columns: Vec<ArrayRef> = match schema {
            Schema::Scored => {
                let texts = self.texts.into_array(None);
                let scores = Float64Array::new(ScalarBuffer::from(self.scores), None);
                let responses = StructArray::new(
                    response_fields(),
                    vec![Arc::new(texts), Arc::new(scores)],
                    None,
                );
                let output = ListArray::new(
                    list_item(response_fields()),
                    OffsetBuffer::new(ScalarBuffer::from(self.outputs)),
                    Arc::new(responses),
                    nulls,
                );
                vec![prompt, Arc::new(output)]
            }
            Schema::Paired => {
                let chosen = self.chosen.into_array(nulls.clone());
                let rejected = self.rejected.into_array(nulls);
                let margin =
                    Float64Array::new(ScalarBuffer::from(self.margin), validity(self.margin_valid));
                vec![
                    prompt,
                    Arc::new(chosen),
                    Arc::new(rejected),
                    Arc::new(margin),
                ]
            }
        };
        // The arrays are built to the schema's types and all have `rows` rows.
        RecordBatch::try_new(arrow_schema(schema, kind), columns)
            .unwrap_or_else(|err| unreachable!("columns built against their schema: {err}"))
    }
}

/// A validity bitmap, or none when every row is valid.
fn validity(valid: Vec<bool>) -> Option<NullBuffer> {
    let nulls = NullBuffer::from(valid);
    (nulls.null_count() > 0).then_some(nulls)
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

fn response_fields() -> Fields {
    Fields::from(vec![
        Field::new("text", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
    ])
}

/// The non-null struct items of a list column.
fn list_item(fields: Fields) -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(fields), false))
}

/// The Arrow schema of a batch of `schema` rows with prompts of `kind` (`None`: not known
/// yet, a Null column).
pub(super) fn arrow_schema(schema: Schema, kind: Option<PromptKind>) -> SchemaRef {
    let prompt_type = match kind {
        None => DataType::Null,
        Some(PromptKind::Text) => DataType::Utf8,
        Some(PromptKind::Messages) => DataType::List(list_item(message_fields())),
    };
    let fields = match schema {
        Schema::Scored => vec![
            Field::new("input", prompt_type, true),
            Field::new("output", DataType::List(list_item(response_fields())), true),
        ],
        Schema::Paired => vec![
            Field::new("prompt", prompt_type, true),
            Field::new("chosen", DataType::Utf8, true),
            Field::new("rejected", DataType::Utf8, true),
            Field::new("margin", DataType::Float64, true),
        ],
    };
    Arc::new(arrow_schema::Schema::new(fields))
}
