//! The one JSON reader of dpov2: JSON Lines or LMFlow JSON, scored or paired rows, streamed
//! into Arrow record batches, every row that is not valid reported as a located [`Problem`].
//!
//! # Rules
//!
//! Values (the same parser for every row of either framing):
//! - The full RFC 8259 grammar is checked everywhere, skipped members included.
//! - Numbers are read with correct rounding to f64 (integers too large to be exact are rounded
//!   like any number); a number whose magnitude overflows f64 (`1e400`, a 400-digit integer)
//!   is a problem, wherever it is. Scores and margins must be numbers (not bool, string or,
//!   for scores, null).
//! - Strings must be UTF-8 (a problem at the first byte of an invalid sequence); escapes are
//!   decoded; a lone or reversed surrogate escape and a raw control byte (< 0x20) are problems.
//! - A member name that appears twice in one object (compared after unescaping), at any depth,
//!   is a problem at its second occurrence.
//! - Objects and arrays nest at most [`MAX_DEPTH`] (128) levels, a row's own object being
//!   level 1 (in LMFlow too: an instance is a row); deeper is a problem, found without
//!   following the nesting further.
//! - A row is an object; the schema's members (in any order) are required except `margin`
//!   (missing or null: null); other members are checked and skipped. A chat message is an
//!   object of exactly the strings `role` and `content`: another member is a problem (no data
//!   is dropped silently). Responses may carry other members (skipped).
//! - The prompt (`input` or `prompt`) is a string or a list of chat messages. A paired row's
//!   `chosen` and `rejected` are both strings or both chat messages: a list of messages, or
//!   LMFlow's conversation object (`paired_conversation`) `{"messages": [...], "system":
//!   string or null, "tools": null or []}` (other members checked and skipped), read as its
//!   messages with the system prompt first as a `system` message. Chat-message completions
//!   need a chat-message prompt (TRL's conversational format).
//! - A paired row's optional members ([`Reader::with_extras`]: the caller names them and their
//!   types, number, int64 integer or string) each go to a column of their own, null where
//!   missing or null. Which of them a file has columns for is fixed, like the kinds, by its
//!   first valid row (those it has, null or not); a later row with a value, not null, for
//!   another is a problem of that member, as the value would have no column.
//! - A paired row of chat-message completions may leave its prompt implicit (no `prompt`
//!   member, as TRL allows): the messages `chosen` and `rejected` both start with (equal role
//!   and content, in order) are its prompt and are taken off both. There must be at least
//!   one, and each completion must go on past them.
//! - The kinds (of the prompt and of the completions) are fixed by the first valid row, in
//!   file order (a row that fails does not fix them, so the result never depends on the
//!   order of a row's members), and are required of every later row. Until then, batches
//!   have Null-typed prompt and completion columns (all their rows are problems) and
//!   [`Reader::schema`] is `None`.
//!
//! Framing:
//! - A UTF-8 byte order mark at byte 0 is skipped.
//! - Lines: a row per line (split at `\n`, so `\r\n` works); a line of only whitespace is
//!   blank, not a row; the last line may lack its newline; anything but whitespace after a
//!   row's value, or a value that is not an object, is a problem of that row only.
//! - LMFlow: one object `{"type": ..., "instances": [...]}`, members in any order (`type` may
//!   follow `instances`); `type` must be a string; other members are checked and skipped.
//!   Faults of the outer object (not an object, no `instances` array or a second one, a
//!   duplicate member, truncation, data after the closing brace, an empty input) are a fatal
//!   [`ReadError::Structure`]. Instances are found by a scan of strings and brackets and then
//!   parsed as rows: one that scans but does not parse is a problem of that row; one whose end
//!   cannot be found is a `Structure` error naming the row.
//!
//! Locations: `row` is the instance index (blank lines are not rows); `byte` the input offset
//! of the offending byte, or of the object missing a member; `field` a path such as `input`,
//! `input[2].role`, `output[1].score`, `meta.x` (skipped members), or `None` for the row as a
//! whole.
//!
//! Batches: at most `max_rows` rows and `max_bytes` bytes of input up to the end of their last
//! row (a row over `max_bytes` makes a batch alone; what follows the last row of the input,
//! such as the end of the LMFlow object, goes to the last batch), and always under 2 GiB of input, so Arrow's 32-bit offsets hold
//! every column (a value is never longer than its JSON); a row that alone passes 2 GiB is a
//! problem. Rows with a problem are null in every column, so batch row `i` is instance
//! `first_row + i`. Memory is bounded by the batch limits, never by the input's size.
//!
//! Each batch is cut into pieces at row boundaries and the pieces are parsed in parallel on
//! the current rayon pool; results do not depend on the number of threads or the limits.

mod columns;
mod frame;
mod parse;

use std::fmt;
use std::io::{self, Read};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rayon::prelude::*;

use columns::{arrow_schema, Columns, Kinds};
pub use columns::{Extra, ExtraKind, PromptKind, MAX_EXTRAS};
use frame::{Framer, Lines, Lmflow, Step};
pub use parse::MAX_DEPTH;
use parse::{Fault, Names, ROW_PAIRED, ROW_SCORED};

/// The most input bytes in one batch: Arrow's 32-bit offsets must hold its values.
const MAX_BATCH_BYTES: usize = i32::MAX as usize;

/// The most input read at once.
const MAX_READ: usize = 16 << 20;

/// Batches under this many bytes are parsed on the calling thread alone.
const MIN_PARALLEL_BYTES: usize = 1 << 16;

/// How rows are laid out in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// JSON Lines: one row per line.
    Lines,
    /// LMFlow: `{"type": ..., "instances": [row, ...]}`.
    Lmflow,
}

/// What a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// LMFlow `text_to_scored_textlist`: `input` (a prompt) and `output`, a list of
    /// `{"text": string, "score": number}`.
    Scored,
    /// LMFlow `paired_text_to_text`: `prompt`, `chosen`, `rejected` and an optional `margin`.
    Paired,
}

/// How to read, and the batch limits (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    pub framing: Framing,
    pub schema: Schema,
    pub max_rows: usize,
    pub max_bytes: usize,
}

/// A row that is not valid: which (`row`, the instance index), where (`byte`, the input
/// offset; `field`, the path inside the row, `None` for the row itself), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub row: u64,
    pub byte: u64,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}", self.row)?;
        if let Some(field) = &self.field {
            write!(f, ", {field}")?;
        }
        write!(f, " (byte {}): {}", self.byte, self.message)
    }
}

/// Why the input as a whole cannot be read further.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// A fault in the framing itself (the LMFlow object), at input offset `byte`, inside the
    /// instance `row` if it is in the `instances` array.
    Structure {
        byte: u64,
        row: Option<u64>,
        message: String,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(err) => write!(f, "cannot read the input: {err}"),
            ReadError::Structure {
                byte,
                row: Some(row),
                message,
            } => write!(f, "row {row} (byte {byte}): {message}"),
            ReadError::Structure {
                byte,
                row: None,
                message,
            } => write!(f, "byte {byte}: {message}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(err) => Some(err),
            ReadError::Structure { .. } => None,
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        ReadError::Io(err)
    }
}

/// Consecutive rows of the input.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Instance index of the batch's first row.
    pub first_row: u64,
    /// Bytes of the input this batch consumed (for progress bars); over all batches they add
    /// up to the input's size (an input without rows has no batch).
    pub bytes: u64,
    pub columns: RecordBatch,
    /// The problems of the null rows of `columns`, by row.
    pub problems: Vec<Problem>,
}

/// Reads batches of rows from `R`.
pub struct Reader<R> {
    input: R,
    options: ReadOptions,
    framer: Framer,
    /// Input not yet consumed by a batch; `buf[0]` is input byte `base`.
    buf: Vec<u8>,
    base: u64,
    eof: bool,
    /// A row found but left for the next batch (it would pass the byte limit).
    pending: Option<(usize, usize)>,
    /// Row spans of the batch being made (kept for its allocation).
    spans: Vec<(usize, usize)>,
    next_row: u64,
    kinds: Kinds,
    done: bool,
    max_row_bytes: usize,
    /// The optional members of paired rows read into columns ([`Reader::with_extras`]).
    extras: Vec<Extra>,
}

impl<R: Read + Send> Reader<R> {
    pub fn new(reader: R, options: ReadOptions) -> Self {
        Self::with_max_row_bytes(reader, options, MAX_BATCH_BYTES)
    }

    /// A reader refusing rows over `max_row_bytes` (2 GiB outside tests).
    fn with_max_row_bytes(reader: R, options: ReadOptions, max_row_bytes: usize) -> Self {
        let framer = match options.framing {
            Framing::Lines => Framer::Lines(Lines::default()),
            Framing::Lmflow => Framer::Lmflow(Lmflow::new()),
        };
        Self {
            input: reader,
            options,
            framer,
            buf: Vec::new(),
            base: 0,
            eof: false,
            pending: None,
            spans: Vec::new(),
            next_row: 0,
            kinds: Kinds::default(),
            done: false,
            max_row_bytes,
            extras: Vec::new(),
        }
    }

    /// The reader, also reading the optional members `extras` of paired rows into columns of
    /// their own, after `margin` and in the order given: a member null or missing in a row
    /// is null there. Which of them a file's batches have is fixed, like the kinds, by its
    /// first valid row: those it has, null or not; in a later row, a value (not null) of
    /// another is a problem, since it would be dropped. `Err` for more than [`MAX_EXTRAS`],
    /// a name given twice or one of the schema's own members.
    pub fn with_extras(mut self, extras: Vec<Extra>) -> Result<Self, String> {
        if extras.len() > MAX_EXTRAS {
            return Err(format!(
                "at most {MAX_EXTRAS} extra members, got {}",
                extras.len()
            ));
        }
        for (k, extra) in extras.iter().enumerate() {
            let name = extra.name.as_bytes();
            if ROW_PAIRED.contains(&name) || extras[..k].iter().any(|e| e.name == extra.name) {
                return Err(format!(
                    "extra member '{}' is given twice or is a member of the row itself",
                    extra.name
                ));
            }
        }
        self.extras = extras;
        Ok(self)
    }

    /// The LMFlow `type`, once read (it may follow the instances).
    pub fn dataset_type(&self) -> Option<&str> {
        match &self.framer {
            Framer::Lmflow(lmflow) => lmflow.dataset_type.as_deref(),
            Framer::Lines(_) => None,
        }
    }

    /// The Arrow schema of the batches, once a valid row fixed the kinds of its prompt (and
    /// completions).
    pub fn schema(&self) -> Option<SchemaRef> {
        self.kinds
            .prompt
            .map(|_| arrow_schema(self.options.schema, &self.extras, self.kinds))
    }

    /// The next batch, `None` at the end; after an error, `None`.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let batch = self.batch();
        if batch.is_err() {
            self.done = true;
        }
        batch
    }

    fn batch(&mut self) -> Result<Option<Batch>, ReadError> {
        let max_bytes = self.options.max_bytes.clamp(1, MAX_BATCH_BYTES);
        let max_rows = self.options.max_rows.max(1);
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        spans.extend(self.pending.take());
        // The row after the last is found too, so that the end of the input is part of the
        // last batch.
        loop {
            match self.framer.next(&self.buf, self.eof, self.base)? {
                Step::Row { start, end }
                    if spans.len() == max_rows
                        || (!spans.is_empty() && self.framer.pos() > max_bytes) =>
                {
                    self.pending = Some((start, end));
                    break;
                }
                Step::Row { start, end } => spans.push((start, end)),
                Step::NeedMore => self.fill(max_bytes)?,
                Step::End => {
                    self.done = true;
                    break;
                }
            }
        }
        let consumed = match self.pending {
            Some((start, _)) => start,
            None => self.buf.len(),
        };
        if spans.is_empty() {
            self.spans = spans;
            return Ok(None);
        }
        let mut columns = self.parse(&spans, consumed);
        self.spans = spans;
        let first_row = self.next_row;
        self.next_row += columns.rows() as u64;
        let problems = std::mem::take(&mut columns.problems);
        let batch = Batch {
            first_row,
            bytes: consumed as u64,
            columns: columns.into_record_batch(self.options.schema, &self.extras, self.kinds),
            problems,
        };
        self.buf.drain(..consumed);
        self.base += consumed as u64;
        self.framer.shift(consumed);
        if let Some((start, end)) = &mut self.pending {
            *start -= consumed;
            *end -= consumed;
        }
        Ok(Some(batch))
    }

    /// Reads up to one more block of input (at most the batch byte limit, so memory stays
    /// bounded by it).
    fn fill(&mut self, max_bytes: usize) -> Result<(), ReadError> {
        if self.eof {
            return Err(ReadError::Structure {
                byte: self.base + self.buf.len() as u64,
                row: None,
                message: "the input ends early".to_owned(),
            });
        }
        let want = max_bytes.min(MAX_READ);
        let read = (&mut self.input)
            .take(want as u64)
            .read_to_end(&mut self.buf)?;
        self.eof = read < want;
        Ok(())
    }

    /// The rows `spans` of `buf[..len]`, parsed: those before the kinds are known one by one
    /// (each may fix them), the rest in parallel pieces.
    fn parse(&mut self, spans: &[(usize, usize)], len: usize) -> Columns {
        let bytes = &self.buf[..len];
        let members: Vec<&[u8]> = match self.options.schema {
            Schema::Scored => ROW_SCORED.to_vec(),
            Schema::Paired => ROW_PAIRED
                .iter()
                .copied()
                .chain(self.extras.iter().map(|extra| extra.name.as_bytes()))
                .collect(),
        };
        let ctx = Context {
            bytes,
            base: self.base,
            schema: self.options.schema,
            members: &members,
            extras: &self.extras,
            max_row_bytes: self.max_row_bytes,
        };
        let mut first = Columns::with_capacity(ctx.schema, ctx.extras, spans.len(), len);
        let mut names = Names::default();
        let mut done = 0;
        while done < spans.len() && self.kinds.prompt.is_none() {
            let row = self.next_row + done as u64;
            ctx.parse(
                &spans[done..done + 1],
                row,
                &mut self.kinds,
                &mut first,
                &mut names,
            );
            done += 1;
        }
        let rest = &spans[done..];
        let (Some(&(rest_start, _)), Some(&(_, rest_end))) = (rest.first(), rest.last()) else {
            return first;
        };
        let pieces = if rest_end - rest_start < MIN_PARALLEL_BYTES {
            1
        } else {
            rayon::current_num_threads().clamp(1, rest.len())
        };
        // Cut where the row starts pass each equal share of the bytes.
        let mut cuts = vec![0];
        for k in 1..pieces {
            let target = rest_start + (rest_end - rest_start) * k / pieces;
            cuts.push(
                rest.partition_point(|&(start, _)| start < target)
                    .max(cuts[k - 1]),
            );
        }
        cuts.push(rest.len());
        let mut others: Vec<Columns> = cuts[1..pieces]
            .iter()
            .zip(&cuts[2..])
            .map(|(&a, &b)| {
                let piece_bytes = match (rest.get(a), rest.get(b.max(1) - 1)) {
                    (Some(&(s, _)), Some(&(_, e))) if b > a => e - s,
                    _ => 0,
                };
                Columns::with_capacity(ctx.schema, ctx.extras, b - a, piece_bytes)
            })
            .collect();
        let mut targets: Vec<&mut Columns> = std::iter::once(&mut first)
            .chain(others.iter_mut())
            .collect();
        let first_rest_row = self.next_row + done as u64;
        let kinds = self.kinds;
        targets.par_iter_mut().enumerate().for_each(|(k, out)| {
            let (a, b) = (cuts[k], cuts[k + 1]);
            let mut kinds = kinds;
            let mut names = Names::default();
            ctx.parse(
                &rest[a..b],
                first_rest_row + a as u64,
                &mut kinds,
                out,
                &mut names,
            );
        });
        first.append(others);
        first
    }
}

/// What every piece of a batch parses against.
#[derive(Clone, Copy)]
struct Context<'a> {
    bytes: &'a [u8],
    base: u64,
    schema: Schema,
    /// The row's member names: the schema's, then the extras'.
    members: &'a [&'a [u8]],
    extras: &'a [Extra],
    max_row_bytes: usize,
}

impl Context<'_> {
    /// Parses the rows `spans`, the first being row `first_row`, into `out`.
    fn parse(
        &self,
        spans: &[(usize, usize)],
        first_row: u64,
        kinds: &mut Kinds,
        out: &mut Columns,
        names: &mut Names,
    ) {
        for (k, &(start, end)) in spans.iter().enumerate() {
            let mark = out.mark();
            // Only a valid row fixes the kinds, whatever the order of its members.
            let mut row_kinds = *kinds;
            let parsed = if end - start > self.max_row_bytes {
                Err(Box::new(Fault {
                    pos: start,
                    path: String::new(),
                    message: format!(
                        "the row is {} bytes; rows may have at most {} (Arrow's 32-bit offsets)",
                        end - start,
                        self.max_row_bytes
                    ),
                }))
            } else {
                parse::row(
                    self.bytes,
                    start,
                    end,
                    self.schema,
                    self.members,
                    &mut row_kinds,
                    out,
                    names,
                )
            };
            match parsed {
                Ok(()) => {
                    *kinds = row_kinds;
                    out.end_row();
                }
                Err(fault) => {
                    let Fault { pos, path, message } = *fault;
                    let problem = Problem {
                        row: first_row + k as u64,
                        byte: self.base + pos as u64,
                        field: (!path.is_empty()).then_some(path),
                        message,
                    };
                    out.null_row(mark, problem);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Framing, ReadOptions, Reader, Schema};

    /// The 2 GiB limit, scaled down: a row over it is a problem of its own, and the rows
    /// around it read normally.
    #[test]
    fn a_row_over_the_row_limit_is_a_problem() {
        let small = "{\"input\": \"p\", \"output\": []}\n";
        let big = format!("{{\"input\": \"{}\", \"output\": []}}\n", "x".repeat(100));
        let input = format!("{small}{big}{small}");
        let options = ReadOptions {
            framing: Framing::Lines,
            schema: Schema::Scored,
            max_rows: 10,
            max_bytes: 1 << 20,
        };
        let mut reader = Reader::with_max_row_bytes(input.as_bytes(), options, 64);
        let batch = reader.next_batch().unwrap().unwrap();
        assert_eq!(batch.columns.num_rows(), 3);
        assert_eq!(batch.problems.len(), 1);
        let problem = &batch.problems[0];
        assert_eq!((problem.row, problem.byte), (1, small.len() as u64));
        let expected = format!(
            "the row is {} bytes; rows may have at most 64 (Arrow's 32-bit offsets)",
            big.len() - 1
        );
        assert_eq!(problem.message, expected);
    }
}
