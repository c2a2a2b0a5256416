//! Streams the `instances` array of an LMFlow JSON dataset as newline-delimited JSON.
//!
//! LMFlow stores a dataset as one object, `{"type": "...", "instances": [{...}, {...}]}`.
//! Parsing it whole needs memory for the whole file; this splitter instead reads it in
//! fixed-size blocks and copies each instance's bytes out, unparsed, as one line (newlines
//! between tokens become spaces), so a JSON Lines parser can take chunks of instances. It
//! checks only the structure it needs: the outer object, the array, balanced brackets and
//! strings. Whether an instance's contents are valid is left to the parser downstream.
//!
//! Inside strings, where most bytes of a dataset are, eight bytes are examined at a time.

use std::fmt;
use std::io::{self, Read};

use crate::text::{skip_plain, unescape};

const READ_BYTES: usize = 1 << 20;

/// Why the file cannot be split: an I/O error, or a structural one at a byte offset (and in
/// the instance with index `row`, when inside the `instances` array).
#[derive(Debug)]
pub enum SplitError {
    Io(io::Error),
    Syntax {
        offset: u64,
        row: Option<u64>,
        message: String,
    },
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::Io(err) => write!(f, "cannot read: {err}"),
            SplitError::Syntax {
                offset,
                row: Some(row),
                message,
            } => write!(f, "row {row} (byte {offset}): {message}"),
            SplitError::Syntax {
                offset,
                row: None,
                message,
            } => write!(f, "byte {offset}: {message}"),
        }
    }
}

impl std::error::Error for SplitError {}

impl From<io::Error> for SplitError {
    fn from(err: io::Error) -> Self {
        SplitError::Io(err)
    }
}

/// Consecutive instances, one per line, each line ending in `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub lines: Vec<u8>,
    /// Number of instances (lines).
    pub count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// Between the members of the outer object; `first`: none read yet.
    Members {
        first: bool,
    },
    /// Inside the `instances` array; `first`: no element read yet.
    Instances {
        first: bool,
    },
    /// After the outer object's closing brace.
    End,
    Done,
}

/// Splits a reader holding one LMFlow JSON dataset into chunks of instances.
pub struct InstanceSplitter<R> {
    reader: R,
    /// Read bytes are `buf[..end]`; the rest is room for the next read.
    buf: Vec<u8>,
    end: usize,
    /// Next unread byte of `buf`.
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    state: State,
    dataset_type: Option<String>,
    seen_instances: bool,
    instances: u64,
    /// Size of the previous chunk, to allocate the next one at once.
    last_chunk_len: usize,
}

impl<R: Read> InstanceSplitter<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: Vec::new(),
            end: 0,
            pos: 0,
            base: 0,
            eof: false,
            state: State::Start,
            dataset_type: None,
            seen_instances: false,
            instances: 0,
            last_chunk_len: 0,
        }
    }

    /// The `type` member, once it has been read.
    pub fn dataset_type(&self) -> Option<&str> {
        self.dataset_type.as_deref()
    }

    /// Bytes of the input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next instances, or `None` once the file is exhausted: at most `max_instances` (at
    /// least one), and no more once the chunk holds `max_bytes`.
    ///
    /// The whole file is checked to its end: the outer object must close, nothing but
    /// whitespace may follow, and an `instances` array must have been found.
    pub fn next_chunk(
        &mut self,
        max_instances: usize,
        max_bytes: usize,
    ) -> Result<Option<Chunk>, SplitError> {
        let mut chunk = Chunk {
            lines: Vec::with_capacity(self.last_chunk_len),
            count: 0,
        };
        while chunk.count < max_instances.max(1) && chunk.lines.len() < max_bytes.max(1) {
            match self.state {
                State::Start => self.start()?,
                State::Members { first } => self.member(first)?,
                State::Instances { first } => {
                    self.skip_whitespace()?;
                    if self.peek()? == Some(b']') {
                        self.pos += 1;
                        self.state = State::Members { first: false };
                        continue;
                    }
                    if !first {
                        self.expect(b',', "',' or ']' after an instance")?;
                        self.skip_whitespace()?;
                    }
                    self.scan_value(Some(&mut chunk.lines))?;
                    chunk.lines.push(b'\n');
                    chunk.count += 1;
                    self.instances += 1;
                    self.state = State::Instances { first: false };
                }
                State::End => {
                    self.skip_whitespace()?;
                    if self.peek()?.is_some() {
                        return Err(self.syntax("unexpected data after the dataset's closing '}'"));
                    }
                    if !self.seen_instances {
                        return Err(self.syntax("no \"instances\" array in the dataset object"));
                    }
                    self.state = State::Done;
                }
                State::Done => break,
            }
        }
        self.last_chunk_len = chunk.lines.len();
        Ok((chunk.count > 0).then_some(chunk))
    }

    fn start(&mut self) -> Result<(), SplitError> {
        self.skip_whitespace()?;
        if self.bytes_read() == 0 && self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
            self.pos += 3; // a UTF-8 byte order mark
            self.skip_whitespace()?;
        }
        match self.peek()? {
            Some(b'{') => {
                self.pos += 1;
                self.state = State::Members { first: true };
                Ok(())
            }
            None => Err(self.syntax("empty file; expected {\"type\": ..., \"instances\": [...]}")),
            Some(b'[') => Err(self.syntax(
                "the file is a JSON array, not LMFlow's {\"type\": ..., \"instances\": [...]} \
                 object",
            )),
            Some(_) => Err(self.syntax(
                "expected '{' opening LMFlow's {\"type\": ..., \"instances\": [...]} object",
            )),
        }
    }

    /// Reads one member of the outer object (or its closing brace).
    fn member(&mut self, first: bool) -> Result<(), SplitError> {
        self.skip_whitespace()?;
        if self.peek()? == Some(b'}') {
            self.pos += 1;
            self.state = State::End;
            return Ok(());
        }
        if !first {
            self.expect(b',', "',' or '}' after a member of the dataset object")?;
            self.skip_whitespace()?;
        }
        let key = self.read_string("a member name in quotes")?;
        self.skip_whitespace()?;
        self.expect(b':', "':' after a member name")?;
        self.skip_whitespace()?;
        self.state = State::Members { first: false };
        match key.as_str() {
            "type" => {
                if self.peek()? != Some(b'"') {
                    return Err(self.syntax("\"type\" must be a string"));
                }
                self.dataset_type = Some(self.read_string("a string")?);
            }
            "instances" => {
                if self.seen_instances {
                    return Err(self.syntax("a second \"instances\" member"));
                }
                self.expect(b'[', "'[' opening the \"instances\" array")?;
                self.seen_instances = true;
                self.state = State::Instances { first: true };
            }
            _ => self.scan_value(None)?,
        }
        Ok(())
    }

    /// Copies (or, with `None`, skips) one JSON value starting at the current byte. Newlines
    /// outside strings become spaces; the bytes are otherwise kept as they are.
    fn scan_value(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), SplitError> {
        let what = if matches!(self.state, State::Instances { .. }) {
            format!("the instance that starts at byte {}", self.bytes_read())
        } else {
            format!("the value that starts at byte {}", self.bytes_read())
        };
        let mut depth: usize = 0;
        let mut in_string = false;
        let mut escaped = false;
        let mut scalar = false;
        loop {
            if self.pos == self.end && !self.fill()? {
                if scalar && depth == 0 {
                    return Ok(());
                }
                return Err(self.syntax(&format!("the file ends inside {what}")));
            }
            let bytes = &self.buf[self.pos..self.end];
            let mut i = 0;
            let mut copied = 0; // bytes[..copied] are already in `out`
            let mut done = false;
            while i < bytes.len() {
                if in_string {
                    if escaped {
                        escaped = false;
                        i += 1;
                        continue;
                    }
                    i += skip_plain(&bytes[i..]);
                    if i == bytes.len() {
                        break;
                    }
                    match bytes[i] {
                        b'\\' => escaped = true,
                        b'"' => {
                            in_string = false;
                            if depth == 0 {
                                done = true;
                                i += 1;
                                break;
                            }
                        }
                        control => {
                            return Err(self.syntax_at(
                                i,
                                &format!(
                                    "a raw control character ({control:#04x}) inside a string; \
                                     JSON requires it escaped (\\n, \\u0000...)"
                                ),
                            ));
                        }
                    }
                    i += 1;
                    continue;
                }
                let b = bytes[i];
                if scalar {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        done = true;
                        break;
                    }
                    i += 1;
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        if depth == 0 {
                            return Err(self
                                .syntax_at(i, &format!("expected a value, got '{}'", b as char)));
                        }
                        depth -= 1;
                        if depth == 0 {
                            done = true;
                            i += 1;
                            break;
                        }
                    }
                    b'\n' | b'\r' if depth > 0 => {
                        if let Some(out) = out.as_deref_mut() {
                            out.extend_from_slice(&bytes[copied..i]);
                            out.push(b' ');
                        }
                        copied = i + 1;
                    }
                    b',' | b':' if depth == 0 => {
                        return Err(
                            self.syntax_at(i, &format!("expected a value, got '{}'", b as char))
                        );
                    }
                    _ if depth == 0 => scalar = true,
                    _ => {}
                }
                i += 1;
            }
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&bytes[copied..i]);
            }
            self.pos += i;
            if done {
                return Ok(());
            }
        }
    }

    /// Reads a JSON string (the current byte must be its opening quote) and decodes it.
    fn read_string(&mut self, expected: &str) -> Result<String, SplitError> {
        if self.peek()? != Some(b'"') {
            return Err(self.syntax(&format!("expected {expected}")));
        }
        let offset = self.bytes_read();
        let mut raw = Vec::new();
        self.scan_value(Some(&mut raw))?;
        decode_string(&raw[1..raw.len() - 1]).ok_or_else(|| SplitError::Syntax {
            offset,
            row: None,
            message: "an invalid escape or non-UTF-8 bytes in a string".to_string(),
        })
    }

    fn skip_whitespace(&mut self) -> Result<(), SplitError> {
        loop {
            while self.pos < self.end {
                if !matches!(self.buf[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(());
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, SplitError> {
        if self.pos == self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    fn expect(&mut self, byte: u8, expected: &str) -> Result<(), SplitError> {
        match self.peek()? {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(self.syntax(&format!("expected {expected}, got '{}'", b as char))),
            None => Err(self.syntax(&format!("the file ends where {expected} was expected"))),
        }
    }

    /// Reads the next block after the unconsumed bytes (moved to the front); `false` at the
    /// end of the input. The buffer grows only when the unconsumed bytes fill it.
    fn fill(&mut self) -> Result<bool, SplitError> {
        if self.eof {
            return Ok(false);
        }
        self.base += self.pos as u64;
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < self.end + READ_BYTES {
            self.buf.resize(self.end + READ_BYTES, 0);
        }
        let read = loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err.into()),
            }
        };
        self.end += read;
        self.eof = read == 0;
        Ok(read > 0)
    }

    fn syntax(&self, message: &str) -> SplitError {
        self.syntax_at(0, message)
    }

    fn syntax_at(&self, ahead: usize, message: &str) -> SplitError {
        SplitError::Syntax {
            offset: self.bytes_read() + ahead as u64,
            row: matches!(self.state, State::Instances { .. }).then_some(self.instances),
            message: message.to_string(),
        }
    }
}

/// The text of a JSON string's contents, or `None` for a bad escape or invalid UTF-8.
fn decode_string(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            i += unescape(&raw[i..], &mut out)?;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
