//! The column buffers rows are parsed into, and their Arrow arrays.
//!
//! Buffers are plain `Vec`s in Arrow's layout (32-bit offsets, values, one validity flag per
//! row), handed to Arrow without a copy. The columns of both schemas and of both kinds of
//! prompt and completion live in one struct; a batch uses those of its schema and kinds.

use std::sync::Arc;

use crate::copy::extend_in_parallel;
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, ListArray, NullArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, SchemaRef};

use super::{Problem, Schema};

/// What a prompt (or a paired row's completion) is: one string, or a list of chat messages
/// `{role, content}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Text,
    Messages,
}

impl PromptKind {
    /// The kind, as messages name it.
    pub(super) fn name(self) -> &'static str {
        match self {
            PromptKind::Text => "a string",
            PromptKind::Messages => "chat messages",
        }
    }
}

/// The kinds of a dataset's rows: of the prompt and (paired rows) of `chosen` and
/// `rejected`, and which of the optional members ([`Extra`]) the rows carry (bit `e` for
/// extra `e`). `None` until the first valid row fixes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds {
    pub prompt: Option<PromptKind>,
    pub completion: Option<PromptKind>,
    pub extras: Option<u64>,
}

/// The most optional members a reader takes (one bit each in [`Kinds::extras`]).
pub const MAX_EXTRAS: usize = 64;

/// An optional member of a paired row read into a column of its own (such as the scores and
/// response indices of `--provenance`, or stored reference log-probs), so that a pair file
/// reads back with every column it was written with. Null or missing: null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub name: String,
    pub kind: ExtraKind,
}

/// What an [`Extra`] member holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    /// A number, as float64.
    Float64,
    /// An integer in the int64 range, written without fraction or exponent.
    Int64,
    /// A string.
    Utf8,
}

impl ExtraKind {
    fn data_type(self) -> DataType {
        match self {
            ExtraKind::Float64 => DataType::Float64,
            ExtraKind::Int64 => DataType::Int64,
            ExtraKind::Utf8 => DataType::Utf8,
        }
    }
}

/// The values of one [`Extra`], one per row (nulls included).
#[derive(Debug)]
pub(super) enum ExtraValues {
    Float64(Vec<f64>),
    Int64(Vec<i64>),
    Utf8(Utf8),
}

/// An [`Extra`]'s column: its values and a validity flag per row.
#[derive(Debug)]
pub(super) struct ExtraColumn {
    pub values: ExtraValues,
    pub valid: Vec<bool>,
}

impl ExtraColumn {
    fn new(kind: ExtraKind, rows: usize) -> Self {
        let values = match kind {
            ExtraKind::Float64 => ExtraValues::Float64(Vec::with_capacity(rows)),
            ExtraKind::Int64 => ExtraValues::Int64(Vec::with_capacity(rows)),
            ExtraKind::Utf8 => ExtraValues::Utf8(Utf8::with_capacity(rows, 0)),
        };
        Self {
            values,
            valid: Vec::with_capacity(rows),
        }
    }

    /// The value count (the rows ended so far, and the current row's once it was pushed).
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Ends the current row with no value (a null).
    pub fn push_null(&mut self) {
        match &mut self.values {
            ExtraValues::Float64(values) => values.push(0.0),
            ExtraValues::Int64(values) => values.push(0),
            ExtraValues::Utf8(values) => values.end_value(),
        }
        self.valid.push(false);
    }

    fn truncate(&mut self, len: usize) {
        match &mut self.values {
            ExtraValues::Float64(values) => values.truncate(len),
            ExtraValues::Int64(values) => values.truncate(len),
            ExtraValues::Utf8(values) => {
                let data = values.offsets[len] as usize;
                values.truncate((len + 1, data));
            }
        }
        self.valid.truncate(len);
    }

    fn append(&mut self, other: &ExtraColumn) {
        match (&mut self.values, &other.values) {
            (ExtraValues::Float64(a), ExtraValues::Float64(b)) => a.extend_from_slice(b),
            (ExtraValues::Int64(a), ExtraValues::Int64(b)) => a.extend_from_slice(b),
            (ExtraValues::Utf8(a), ExtraValues::Utf8(b)) => a.append(&[b]),
            _ => unreachable!("the pieces of a batch have the same extras"),
        }
        self.valid.extend_from_slice(&other.valid);
    }

    fn into_array(self) -> ArrayRef {
        let nulls = validity(self.valid);
        match self.values {
            ExtraValues::Float64(values) => {
                Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
            }
            ExtraValues::Int64(values) => {
                Arc::new(Int64Array::new(ScalarBuffer::from(values), nulls))
            }
            ExtraValues::Utf8(values) => Arc::new(values.into_array(nulls)),
        }
    }
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

    /// Appends the values of `others`, in order; their bytes are copied in parallel.
    fn append(&mut self, others: &[&Utf8]) {
        for other in others {
            shift_extend(&mut self.offsets, &other.offsets);
        }
        let parts: Vec<&[u8]> = others.iter().map(|other| &other.data[..]).collect();
        extend_in_parallel(&mut self.data, &parts);
    }

    fn value(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Removes values `first..first + count` (all after the last row's end), appending them
    /// to `to` if given.
    fn take_values(&mut self, first: usize, count: usize, to: Option<&mut Utf8>) {
        let (a, b) = (
            self.offsets[first] as usize,
            self.offsets[first + count] as usize,
        );
        if let Some(to) = to {
            let base = to.data.len() as i32 - a as i32;
            to.data.extend_from_slice(&self.data[a..b]);
            to.offsets.extend(
                self.offsets[first + 1..=first + count]
                    .iter()
                    .map(|o| o + base),
            );
        }
        self.data.drain(a..b);
        self.offsets.drain(first + 1..=first + count);
        for offset in &mut self.offsets[first + 1..] {
            *offset -= (b - a) as i32;
        }
    }

    /// Inserts `value` as value `at`.
    fn insert_value(&mut self, at: usize, value: &[u8]) {
        let start = self.offsets[at] as usize;
        self.data.splice(start..start, value.iter().copied());
        self.offsets.insert(at + 1, (start + value.len()) as i32);
        for offset in &mut self.offsets[at + 2..] {
            *offset += value.len() as i32;
        }
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

/// A column of conversations: per row, offsets into the messages (`roles`, `contents`).
#[derive(Debug)]
pub(super) struct Messages {
    pub rows: Vec<i32>,
    pub roles: Utf8,
    pub contents: Utf8,
}

impl Messages {
    fn new(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            rows: offsets,
            roles: Utf8::with_capacity(0, 0),
            contents: Utf8::with_capacity(0, 0),
        }
    }

    /// How many messages all rows so far and the current one hold.
    pub fn count(&self) -> usize {
        self.roles.offsets.len() - 1
    }

    /// Ends a message whose role and content were appended.
    pub fn end_message(&mut self) {
        self.roles.end_value();
        self.contents.end_value();
    }

    /// Message `i` as `(role, content)`.
    pub fn message(&self, i: usize) -> (&[u8], &[u8]) {
        (self.roles.value(i), self.contents.value(i))
    }

    /// Moves messages `first..first + count` of the current row to the end of `to` (the
    /// current row of another column), or drops them.
    pub fn take_messages(&mut self, first: usize, count: usize, to: Option<&mut Messages>) {
        let (roles, contents) = match to {
            Some(to) => (Some(&mut to.roles), Some(&mut to.contents)),
            None => (None, None),
        };
        self.roles.take_values(first, count, roles);
        self.contents.take_values(first, count, contents);
    }

    /// Inserts a message as message `at` (in the current row).
    pub fn insert_message(&mut self, at: usize, role: &[u8], content: &[u8]) {
        self.roles.insert_value(at, role);
        self.contents.insert_value(at, content);
    }

    fn mark(&self) -> ((usize, usize), (usize, usize)) {
        (self.roles.mark(), self.contents.mark())
    }

    fn truncate(&mut self, mark: ((usize, usize), (usize, usize))) {
        self.roles.truncate(mark.0);
        self.contents.truncate(mark.1);
    }

    fn end_row(&mut self) {
        self.rows.push(self.count() as i32);
    }

    fn append(&mut self, others: &[&Messages]) {
        for other in others {
            shift_extend(&mut self.rows, &other.rows);
        }
        let roles: Vec<&Utf8> = others.iter().map(|other| &other.roles).collect();
        self.roles.append(&roles);
        let contents: Vec<&Utf8> = others.iter().map(|other| &other.contents).collect();
        self.contents.append(&contents);
    }

    fn into_array(self, nulls: Option<NullBuffer>) -> ListArray {
        let messages = StructArray::new(
            message_fields(),
            vec![
                Arc::new(self.roles.into_array(None)),
                Arc::new(self.contents.into_array(None)),
            ],
            None,
        );
        ListArray::new(
            list_item(message_fields()),
            OffsetBuffer::new(ScalarBuffer::from(self.rows)),
            Arc::new(messages),
            nulls,
        )
    }
}

/// The rows of a piece of a batch, and the problems of those that are null.
#[derive(Debug)]
pub(super) struct Columns {
    pub valid: Vec<bool>,
    pub prompt: Utf8,
    pub prompt_messages: Messages,
    /// Per row, offsets into the responses (`texts`, `scores`).
    pub outputs: Vec<i32>,
    pub texts: Utf8,
    pub scores: Vec<f64>,
    pub chosen: Utf8,
    pub rejected: Utf8,
    pub chosen_messages: Messages,
    pub rejected_messages: Messages,
    pub margin: Vec<f64>,
    pub margin_valid: Vec<bool>,
    /// One column per [`Extra`] of the reader, in its order.
    pub extras: Vec<ExtraColumn>,
    pub problems: Vec<Problem>,
}

type MessagesMark = ((usize, usize), (usize, usize));

/// The lengths of every buffer at the start of a row, to roll a faulty row back.
pub(super) struct Mark {
    prompt: (usize, usize),
    prompt_messages: MessagesMark,
    texts: (usize, usize),
    scores: usize,
    chosen: (usize, usize),
    rejected: (usize, usize),
    chosen_messages: MessagesMark,
    rejected_messages: MessagesMark,
    margin: usize,
    extras: usize,
}

impl Columns {
    /// Room for `rows` rows parsed from `bytes` bytes of JSON of `schema` (a value is never
    /// longer than its JSON), with a column for each of `extras`.
    pub fn with_capacity(schema: Schema, extras: &[Extra], rows: usize, bytes: usize) -> Self {
        let mut outputs = Vec::with_capacity(rows + 1);
        outputs.push(0);
        let (prompt, text, pair) = match schema {
            Schema::Scored => (bytes / 4, bytes, 0),
            Schema::Paired => (bytes / 4, 0, bytes / 2),
        };
        Self {
            valid: Vec::with_capacity(rows),
            prompt: Utf8::with_capacity(rows, prompt),
            prompt_messages: Messages::new(rows),
            outputs,
            texts: Utf8::with_capacity(bytes / 256, text),
            scores: Vec::with_capacity(bytes / 256),
            chosen: Utf8::with_capacity(rows, pair),
            rejected: Utf8::with_capacity(rows, pair),
            chosen_messages: Messages::new(rows),
            rejected_messages: Messages::new(rows),
            margin: Vec::with_capacity(rows),
            margin_valid: Vec::with_capacity(rows),
            extras: extras
                .iter()
                .map(|extra| ExtraColumn::new(extra.kind, rows))
                .collect(),
            problems: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    pub fn mark(&self) -> Mark {
        Mark {
            prompt: self.prompt.mark(),
            prompt_messages: self.prompt_messages.mark(),
            texts: self.texts.mark(),
            scores: self.scores.len(),
            chosen: self.chosen.mark(),
            rejected: self.rejected.mark(),
            chosen_messages: self.chosen_messages.mark(),
            rejected_messages: self.rejected_messages.mark(),
            margin: self.margin.len(),
            extras: self.valid.len(),
        }
    }

    /// Ends a row whose values were appended (an extra it lacks is null).
    pub fn end_row(&mut self) {
        let rows = self.valid.len();
        for extra in self.extras.iter_mut().filter(|extra| extra.len() == rows) {
            extra.push_null();
        }
        self.valid.push(true);
        self.end_entries();
    }

    /// Drops what a faulty row appended since `mark` and adds it as a null row.
    pub fn null_row(&mut self, mark: Mark, problem: Problem) {
        self.prompt.truncate(mark.prompt);
        self.prompt_messages.truncate(mark.prompt_messages);
        self.texts.truncate(mark.texts);
        self.scores.truncate(mark.scores);
        self.chosen.truncate(mark.chosen);
        self.rejected.truncate(mark.rejected);
        self.chosen_messages.truncate(mark.chosen_messages);
        self.rejected_messages.truncate(mark.rejected_messages);
        self.margin.truncate(mark.margin);
        self.margin_valid.truncate(mark.margin);
        self.margin.push(0.0);
        self.margin_valid.push(false);
        for extra in &mut self.extras {
            extra.truncate(mark.extras);
            extra.push_null();
        }
        self.valid.push(false);
        self.end_entries();
        self.problems.push(problem);
    }

    /// The row-level offsets of every column (the margin is pushed by the row itself).
    fn end_entries(&mut self) {
        self.prompt.end_value();
        self.prompt_messages.end_row();
        self.outputs.push(self.scores.len() as i32);
        self.chosen.end_value();
        self.rejected.end_value();
        self.chosen_messages.end_row();
        self.rejected_messages.end_row();
    }

    /// Appends the rows of each of `pieces`, in order, after these (the text bytes, nearly
    /// all of a batch, copied in parallel).
    pub fn append(&mut self, pieces: Vec<Columns>) {
        fn each<'a, T>(pieces: &'a [Columns], column: impl Fn(&'a Columns) -> &'a T) -> Vec<&'a T> {
            pieces.iter().map(column).collect()
        }
        self.prompt.append(&each(&pieces, |piece| &piece.prompt));
        self.prompt_messages
            .append(&each(&pieces, |piece| &piece.prompt_messages));
        self.texts.append(&each(&pieces, |piece| &piece.texts));
        self.chosen.append(&each(&pieces, |piece| &piece.chosen));
        self.rejected
            .append(&each(&pieces, |piece| &piece.rejected));
        self.chosen_messages
            .append(&each(&pieces, |piece| &piece.chosen_messages));
        self.rejected_messages
            .append(&each(&pieces, |piece| &piece.rejected_messages));
        for piece in pieces {
            self.valid.extend_from_slice(&piece.valid);
            shift_extend(&mut self.outputs, &piece.outputs);
            self.scores.extend_from_slice(&piece.scores);
            self.margin.extend_from_slice(&piece.margin);
            self.margin_valid.extend_from_slice(&piece.margin_valid);
            for (extra, more) in self.extras.iter_mut().zip(&piece.extras) {
                extra.append(more);
            }
            self.problems.extend(piece.problems);
        }
    }

    /// The record batch of `schema`, its prompt and completion columns of `kinds` (Null
    /// columns while no row was valid: then every row is null), and a column for each of
    /// `extras` that the kinds hold.
    pub fn into_record_batch(self, schema: Schema, extras: &[Extra], kinds: Kinds) -> RecordBatch {
        let rows = self.valid.len();
        let nulls = validity(self.valid);
        let column = |kind: Option<PromptKind>, text: Utf8, messages: Messages| -> ArrayRef {
            match kind {
                None => Arc::new(NullArray::new(rows)),
                Some(PromptKind::Text) => Arc::new(text.into_array(nulls.clone())),
                Some(PromptKind::Messages) => Arc::new(messages.into_array(nulls.clone())),
            }
        };
        let prompt = column(kinds.prompt, self.prompt, self.prompt_messages);
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
                    nulls.clone(),
                );
                vec![prompt, Arc::new(output)]
            }
            Schema::Paired => {
                let chosen = column(kinds.completion, self.chosen, self.chosen_messages);
                let rejected = column(kinds.completion, self.rejected, self.rejected_messages);
                let margin =
                    Float64Array::new(ScalarBuffer::from(self.margin), validity(self.margin_valid));
                let mut columns = vec![prompt, chosen, rejected, Arc::new(margin) as ArrayRef];
                let held = kinds.extras.unwrap_or(0);
                columns.extend(
                    self.extras
                        .into_iter()
                        .enumerate()
                        .filter(|&(e, _)| held >> e & 1 == 1)
                        .map(|(_, extra)| extra.into_array()),
                );
                columns
            }
        };
        // The arrays are built to the schema's types and all have `rows` rows.
        RecordBatch::try_new(arrow_schema(schema, extras, kinds), columns)
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

/// The Arrow type of a prompt or completion of `kind` (`None`: not known yet, Null).
fn kind_type(kind: Option<PromptKind>) -> DataType {
    match kind {
        None => DataType::Null,
        Some(PromptKind::Text) => DataType::Utf8,
        Some(PromptKind::Messages) => DataType::List(list_item(message_fields())),
    }
}

/// The Arrow schema of a batch of `schema` rows of `kinds`, with the `extras` they hold.
pub(super) fn arrow_schema(schema: Schema, extras: &[Extra], kinds: Kinds) -> SchemaRef {
    let prompt_type = kind_type(kinds.prompt);
    let fields = match schema {
        Schema::Scored => vec![
            Field::new("input", prompt_type, true),
            Field::new("output", DataType::List(list_item(response_fields())), true),
        ],
        Schema::Paired => {
            let held = kinds.extras.unwrap_or(0);
            let mut fields = vec![
                Field::new("prompt", prompt_type, true),
                Field::new("chosen", kind_type(kinds.completion), true),
                Field::new("rejected", kind_type(kinds.completion), true),
                Field::new("margin", DataType::Float64, true),
            ];
            fields.extend(
                extras
                    .iter()
                    .enumerate()
                    .filter(|&(e, _)| held >> e & 1 == 1)
                    .map(|(_, extra)| Field::new(&extra.name, extra.kind.data_type(), true)),
            );
            fields
        }
    };
    Arc::new(arrow_schema::Schema::new(fields))
}
