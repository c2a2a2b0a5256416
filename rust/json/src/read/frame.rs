//! Finding rows in the input: lines of JSON Lines, or the instances of an LMFlow object.
//!
//! A framer walks a buffer that grows at its end (more input read) and loses its start (a
//! batch consumed: [`Framer::shift`]); it answers with the next row's byte range, or asks for
//! more input. Its work is resumable, so a long row is scanned once however it arrives.

use memchr::memchr;

use super::parse::{Cursor, Names};
use super::ReadError;
use crate::text::skip_plain;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the framer found next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A row: `buf[start..end]`.
    Row { start: usize, end: usize },
    /// More input is needed to say.
    NeedMore,
    /// No rows follow (and the input was checked to its end).
    End,
}

pub(super) enum Framer {
    Lines(Lines),
    Lmflow(Lmflow),
}

impl Framer {
    /// The next row of `buf`; `eof`: nothing follows `buf` in the input. `base` is the
    /// input offset of `buf[0]`, for errors.
    pub fn next(&mut self, buf: &[u8], eof: bool, base: u64) -> Result<Step, ReadError> {
        match self {
            Framer::Lines(lines) => Ok(lines.next(buf, eof)),
            Framer::Lmflow(lmflow) => lmflow.next(buf, eof, base),
        }
    }

    /// Where the framer has read to.
    pub fn pos(&self) -> usize {
        match self {
            Framer::Lines(lines) => lines.pos,
            Framer::Lmflow(lmflow) => lmflow.pos,
        }
    }

    /// The first `consumed` bytes of the buffer were dropped.
    pub fn shift(&mut self, consumed: usize) {
        match self {
            Framer::Lines(lines) => {
                lines.pos -= consumed;
                lines.searched -= consumed;
            }
            Framer::Lmflow(lmflow) => {
                lmflow.pos -= consumed;
                if lmflow.scan.started {
                    lmflow.scan.pos -= consumed;
                }
            }
        }
    }
}

/// JSON Lines: a row per line that is not blank.
#[derive(Debug, Default)]
pub(super) struct Lines {
    /// Start of the next line.
    pos: usize,
    /// Bytes up to here were searched for the next newline in vain.
    searched: usize,
    started: bool,
}

impl Lines {
    fn next(&mut self, buf: &[u8], eof: bool) -> Step {
        if !self.started {
            if buf.len() < BOM.len() && !eof {
                return Step::NeedMore;
            }
            if buf.starts_with(BOM) {
                self.pos = BOM.len();
            }
            self.searched = self.pos;
            self.started = true;
        }
        loop {
            let start = self.pos;
            let end = match memchr(b'\n', &buf[self.searched..]) {
                Some(at) => self.searched + at,
                None if eof => buf.len(),
                None => {
                    self.searched = buf.len();
                    return Step::NeedMore;
                }
            };
            if start == buf.len() {
                return Step::End;
            }
            self.pos = (end + 1).min(buf.len());
            self.searched = self.pos;
            let blank = buf[start..end]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r'));
            if !blank {
                return Step::Row { start, end };
            }
        }
    }
}

/// Where the LMFlow framer is in the outer object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// After `{`: a member name or `}`.
    FirstMember,
    /// After a member: `,` or `}`.
    AfterMember,
    /// After `,`: a member name.
    Member,
    /// After `[` of `instances`: an instance or `]`.
    FirstInstance,
    /// After an instance: `,` or `]`.
    AfterInstance,
    /// After `,` in `instances`: an instance.
    Instance,
    /// After the closing `}`: only whitespace.
    AfterEnd,
}

/// A resumable search for the end of one JSON value: strings and bracket depth only.
#[derive(Debug, Default, Clone)]
struct Scan {
    /// Scanned up to here.
    pos: usize,
    /// Open brackets (0 with `started`: a string or scalar).
    depth: u64,
    in_string: bool,
    started: bool,
}

/// What a scan found.
enum Scanned {
    End(usize),
    NeedMore,
}

impl Scan {
    /// The end of the value starting at `start` in `buf`, or `NeedMore` (at the end of the
    /// input too: the value never ends).
    fn value_end(&mut self, buf: &[u8], start: usize) -> Scanned {
        if !self.started {
            *self = Scan {
                pos: start,
                depth: 0,
                in_string: false,
                started: true,
            };
            match buf[start] {
                b'{' | b'[' => {
                    self.depth = 1;
                    self.pos += 1;
                }
                b'"' => {
                    self.in_string = true;
                    self.pos += 1;
                }
                _ => {
                    // A scalar (or garbage) ends at the first delimiter; the parser says
                    // what it is.
                    return match buf[start..].iter().position(|b| {
                        matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
                    }) {
                        Some(len) => Scanned::End(start + len),
                        None => {
                            self.pos = start;
                            self.started = false;
                            Scanned::NeedMore
                        }
                    };
                }
            }
        }
        loop {
            if self.in_string {
                self.pos += skip_plain(&buf[self.pos..]);
                match buf.get(self.pos) {
                    None => return Scanned::NeedMore,
                    Some(b'"') => {
                        self.in_string = false;
                        self.pos += 1;
                        if self.depth == 0 {
                            return Scanned::End(self.pos);
                        }
                    }
                    Some(b'\\') => {
                        if self.pos + 1 >= buf.len() {
                            return Scanned::NeedMore;
                        }
                        self.pos += 2;
                    }
                    Some(_) => self.pos += 1, // a control byte: the parser reports it
                }
            } else {
                let Some(&byte) = buf.get(self.pos) else {
                    return Scanned::NeedMore;
                };
                self.pos += 1;
                match byte {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Scanned::End(self.pos);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// LMFlow's `{"type": "...", "instances": [...]}`: a row per instance.
#[derive(Debug)]
pub(super) struct Lmflow {
    pos: usize,
    state: State,
    scan: Scan,
    /// Instances found so far.
    rows: u64,
    seen_instances: bool,
    /// The names of the outer members read, to refuse a second one.
    names: Vec<Vec<u8>>,
    pub dataset_type: Option<String>,
}

impl Lmflow {
    pub fn new() -> Self {
        Self {
            pos: 0,
            state: State::Start,
            scan: Scan::default(),
            rows: 0,
            seen_instances: false,
            names: Vec::new(),
            dataset_type: None,
        }
    }

    fn next(&mut self, buf: &[u8], eof: bool, base: u64) -> Result<Step, ReadError> {
        let structure = |at: usize, row: Option<u64>, message: String| ReadError::Structure {
            byte: base + at as u64,
            row,
            message,
        };
        loop {
            if self.state == State::Start {
                if buf.len() < BOM.len() && !eof {
                    return Ok(Step::NeedMore);
                }
                if buf.starts_with(BOM) {
                    self.pos = BOM.len();
                }
            }
            // Whitespace between tokens; instances begin at their first byte.
            while matches!(buf.get(self.pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.pos += 1;
            }
            let Some(&byte) = buf.get(self.pos) else {
                if !eof {
                    return Ok(Step::NeedMore);
                }
                return Err(match self.state {
                    State::Start => structure(
                        self.pos,
                        None,
                        "empty input; expected an LMFlow object \
                         {\"type\": ..., \"instances\": [...]}"
                            .to_owned(),
                    ),
                    State::AfterEnd => return Ok(Step::End),
                    State::FirstInstance | State::AfterInstance | State::Instance => structure(
                        self.pos,
                        Some(self.rows),
                        "the input ends inside the instances array (truncated?)".to_owned(),
                    ),
                    _ => structure(
                        self.pos,
                        None,
                        "the input ends inside the LMFlow object (truncated?)".to_owned(),
                    ),
                });
            };
            let got = || describe(byte);
            match (self.state, byte) {
                (State::Start, b'{') => {
                    self.pos += 1;
                    self.state = State::FirstMember;
                }
                (State::Start, _) => {
                    return Err(structure(
                        self.pos,
                        None,
                        format!(
                            "expected an LMFlow object {{\"type\": ..., \"instances\": [...]}}, \
                             got {}",
                            got()
                        ),
                    ))
                }
                (State::FirstMember | State::AfterMember, b'}') => {
                    if !self.seen_instances {
                        return Err(structure(
                            self.pos,
                            None,
                            "the LMFlow object has no \"instances\" member".to_owned(),
                        ));
                    }
                    self.pos += 1;
                    self.state = State::AfterEnd;
                }
                (State::AfterMember, b',') => {
                    self.pos += 1;
                    self.state = State::Member;
                }
                (State::FirstMember | State::Member, b'"') => match self.member(buf, eof, base)? {
                    Some(next) => self.state = next,
                    None => return Ok(Step::NeedMore),
                },
                (State::FirstMember | State::Member, _) => {
                    return Err(structure(
                        self.pos,
                        None,
                        format!("expected a member name, got {}", got()),
                    ))
                }
                (State::AfterMember, _) => {
                    return Err(structure(
                        self.pos,
                        None,
                        format!("expected ',' or '}}' after a member, got {}", got()),
                    ))
                }
                (State::FirstInstance | State::AfterInstance, b']') => {
                    self.pos += 1;
                    self.state = State::AfterMember;
                }
                (State::AfterInstance, b',') => {
                    self.pos += 1;
                    self.state = State::Instance;
                }
                (State::AfterInstance, _) => {
                    return Err(structure(
                        self.pos,
                        Some(self.rows),
                        format!("expected ',' or ']' after an instance, got {}", got()),
                    ))
                }
                (State::Instance, b']') => {
                    return Err(structure(
                        self.pos,
                        Some(self.rows),
                        "expected an instance after ',', got ']'".to_owned(),
                    ))
                }
                (State::FirstInstance | State::Instance, _) => {
                    let start = self.pos;
                    match self.scan.value_end(buf, start) {
                        Scanned::End(end) => {
                            self.scan.started = false;
                            self.pos = end;
                            self.rows += 1;
                            self.state = State::AfterInstance;
                            return Ok(Step::Row { start, end });
                        }
                        Scanned::NeedMore if eof => {
                            return Err(structure(
                                start,
                                Some(self.rows),
                                "the instance starting here never ends (truncated file or \
                                 unbalanced brackets)"
                                    .to_owned(),
                            ))
                        }
                        Scanned::NeedMore => return Ok(Step::NeedMore),
                    }
                }
                (State::AfterEnd, _) => {
                    return Err(structure(
                        self.pos,
                        None,
                        format!("data after the LMFlow object's closing brace: {}", got()),
                    ))
                }
            }
        }
    }

    /// The member whose name starts at `pos`: `instances` opens the array, `type` is kept,
    /// others are checked and skipped. Returns the next state, or `None` if the member is
    /// not all in `buf` yet (then nothing was consumed).
    fn member(&mut self, buf: &[u8], eof: bool, base: u64) -> Result<Option<State>, ReadError> {
        let structure = |at: usize, message: String| ReadError::Structure {
            byte: base + at as u64,
            row: None,
            message,
        };
        let truncated = |at: usize| {
            structure(
                at,
                "the input ends inside the LMFlow object (truncated?)".to_owned(),
            )
        };
        let mut scan = Scan::default();
        let Scanned::End(name_end) = scan.value_end(buf, self.pos) else {
            return if eof {
                Err(truncated(buf.len()))
            } else {
                Ok(None)
            };
        };
        let mut names = Names::default();
        let mut name = Vec::new();
        let mut cursor = Cursor::new(&buf[..name_end], self.pos, &mut names);
        if let Err(fault) = cursor.required_string(&mut name) {
            return Err(structure(fault.pos, fault.message));
        }
        let mut at = name_end;
        while matches!(buf.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            at += 1;
        }
        match buf.get(at) {
            None if eof => return Err(truncated(at)),
            None => return Ok(None),
            Some(b':') => at += 1,
            Some(&other) => {
                return Err(structure(
                    at,
                    format!("expected ':' after a member name, got {}", describe(other)),
                ))
            }
        }
        while matches!(buf.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            at += 1;
        }
        let Some(&first) = buf.get(at) else {
            return if eof { Err(truncated(at)) } else { Ok(None) };
        };
        if self.names.contains(&name) {
            return Err(structure(
                self.pos,
                format!(
                    "a second \"{}\" member in the LMFlow object",
                    String::from_utf8_lossy(&name)
                ),
            ));
        }
        if name == b"instances" {
            if first != b'[' {
                return Err(structure(
                    at,
                    format!("\"instances\" must be an array, got {}", describe(first)),
                ));
            }
            self.names.push(name);
            self.seen_instances = true;
            self.pos = at + 1;
            return Ok(Some(State::FirstInstance));
        }
        let mut scan = Scan::default();
        let value_end = match scan.value_end(buf, at) {
            Scanned::End(end) => end,
            Scanned::NeedMore if eof => return Err(truncated(buf.len())),
            Scanned::NeedMore => return Ok(None),
        };
        let mut cursor = Cursor::new(&buf[..value_end], at, &mut names);
        let checked = if name == b"type" {
            if first != b'"' {
                return Err(structure(
                    at,
                    format!("\"type\" must be a string, got {}", describe(first)),
                ));
            }
            let mut value = Vec::new();
            cursor.required_string(&mut value).map(|()| {
                // The parser checked that the bytes are UTF-8.
                self.dataset_type = Some(String::from_utf8_lossy(&value).into_owned());
            })
        } else {
            cursor.skip_value(2)
        };
        if let Err(fault) = checked {
            return Err(structure(fault.pos, fault.message));
        }
        if !cursor.at_end() {
            return Err(structure(
                cursor.pos,
                "expected ',' or '}' after a member".to_owned(),
            ));
        }
        self.names.push(name);
        self.pos = value_end;
        Ok(Some(State::AfterMember))
    }
}

/// A byte where something else was expected, for messages.
fn describe(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("the byte {byte:#04x}")
    }
}
