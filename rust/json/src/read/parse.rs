//! The one JSON value parser: a row's bytes straight into column buffers, or a located fault.
//!
//! Every rule of the module documentation that concerns values lives here, once: the grammar,
//! strings (UTF-8, escapes, control bytes), numbers, duplicate names, nesting depth, and the
//! two row schemas. Recursion follows nesting and is bounded by [`MAX_DEPTH`].

use std::collections::HashSet;

use super::columns::{Columns, ExtraColumn, ExtraValues, Kinds, Messages, PromptKind};
use super::Schema;
use crate::text::{hex4, skip_plain, unescape};

/// Deepest nesting of objects and arrays in a row; the row's own object is level 1.
pub const MAX_DEPTH: usize = 128;

/// Objects with more members than this check duplicate names with a hash set instead of
/// comparing with each earlier name.
const FEW_MEMBERS: usize = 16;

/// What went wrong in a row: at which byte of the buffer, in which field (`""`: the row
/// itself), and what.
#[derive(Debug)]
pub(super) struct Fault {
    pub pos: usize,
    pub path: String,
    pub message: String,
}

pub(super) type Res<T> = Result<T, Box<Fault>>;

fn fault<T>(pos: usize, message: impl Into<String>) -> Res<T> {
    Err(Box::new(Fault {
        pos,
        path: String::new(),
        message: message.into(),
    }))
}

impl Fault {
    /// The same fault seen from the object holding it as member `name`.
    fn in_member(mut self: Box<Self>, name: &str) -> Box<Self> {
        self.path = match self.path.as_bytes().first() {
            None => name.to_owned(),
            Some(b'[') => format!("{name}{}", self.path),
            Some(_) => format!("{name}.{}", self.path),
        };
        self
    }

    /// The same fault seen from the array holding it as element `index`.
    fn in_element(mut self: Box<Self>, index: usize) -> Box<Self> {
        self.path = match self.path.as_bytes().first() {
            None => format!("[{index}]"),
            Some(b'[') => format!("[{index}]{}", self.path),
            Some(_) => format!("[{index}].{}", self.path),
        };
        self
    }
}

/// The names of the objects being read, innermost last, to find duplicates.
#[derive(Default)]
pub(super) struct Names {
    arena: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

/// One open object: where its names start in [`Names`], how many members were read, and
/// the hash set that takes over for large objects.
struct Object {
    mark: (usize, usize),
    members: usize,
    many: Option<HashSet<Vec<u8>>>,
}

/// One open array: its depth and how many elements were read.
struct Array {
    depth: usize,
    elements: usize,
}

/// A cursor over one row: `bytes` ends where the row ends, so nothing past it is read.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pub pos: usize,
    names: &'a mut Names,
    /// Where skipped strings are unescaped (and then dropped).
    scratch: Vec<u8>,
    /// Whether all of `bytes[pos..]` is known to be UTF-8, so strings need no check of their
    /// own: a run of a string between ASCII stops is then UTF-8 too.
    utf8_checked: bool,
}

/// The member names of each object of the schemas, in the order of [`Key`] ids (a paired
/// row's [`super::Extra`] members follow its own).
pub(super) const ROW_SCORED: &[&[u8]] = &[b"input", b"output"];
pub(super) const ROW_PAIRED: &[&[u8]] = &[b"prompt", b"chosen", b"rejected", b"margin"];
const RESPONSE: &[&[u8]] = &[b"text", b"score"];
const MESSAGE: &[&[u8]] = &[b"role", b"content"];
const CONVERSATION: &[&[u8]] = &[b"messages", b"system", b"tools"];

/// Which completion of a paired row.
#[derive(Clone, Copy)]
enum Side {
    Chosen,
    Rejected,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Chosen => "chosen",
            Side::Rejected => "rejected",
        }
    }
}

/// A member name just read: its index among the known names, if it is one, and where it lies
/// in [`Names`] (for paths).
struct Key {
    known: Option<usize>,
    span: (usize, usize),
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8], pos: usize, names: &'a mut Names) -> Self {
        names.arena.clear();
        names.spans.clear();
        Self {
            bytes,
            pos,
            names,
            scratch: Vec::new(),
            utf8_checked: false,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    pub fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.bytes.len()
    }

    /// What the value (or byte) at the cursor is, for messages: a short string or number is
    /// quoted as written.
    fn got(&self) -> String {
        let rest = &self.bytes[self.pos..];
        let Some(&first) = rest.first() else {
            return "the end of the row".to_owned();
        };
        let literal = |text: &[u8]| String::from_utf8_lossy(text).into_owned();
        match first {
            b'{' => "an object".to_owned(),
            b'[' => "an array".to_owned(),
            b'"' => match rest[1..].iter().take(40).position(|&b| b == b'"') {
                Some(end) => literal(&rest[..end + 2]),
                None => "a string".to_owned(),
            },
            b'-' | b'0'..=b'9' => {
                let len = rest
                    .iter()
                    .take(40)
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(rest.len().min(40));
                literal(&rest[..len])
            }
            _ => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if rest.starts_with(word) {
                        return literal(word);
                    }
                }
                match std::str::from_utf8(&rest[..rest.len().min(4)]) {
                    Ok(text) => format!("{:?}", text.chars().next().unwrap_or(' ')),
                    Err(_) => format!("the byte {first:#04x}"),
                }
            }
        }
    }

    fn expected<T>(&self, what: &str) -> Res<T> {
        if self.bytes[self.pos..].starts_with(b"null") {
            return fault(self.pos, format!("null; expected {what}"));
        }
        fault(self.pos, format!("expected {what}, got {}", self.got()))
    }

    fn eat(&mut self, byte: u8, what: &str) -> Res<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            fault(self.pos, format!("expected {what}, got {}", self.got()))
        }
    }

    fn open_object(&mut self, depth: usize) -> Res<Object> {
        if depth > MAX_DEPTH {
            return fault(self.pos, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.pos += 1; // the caller saw `{`
        Ok(Object {
            mark: (self.names.arena.len(), self.names.spans.len()),
            members: 0,
            many: None,
        })
    }

    /// The next member of `object`, positioned at its value, or `None` after the closing
    /// brace. A name seen before in the same object is a fault at that name.
    fn next_key(&mut self, object: &mut Object, known: &[&[u8]]) -> Res<Option<Key>> {
        self.skip_whitespace();
        if object.members == 0 {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(None);
            }
        } else {
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.names.arena.truncate(object.mark.0);
                    self.names.spans.truncate(object.mark.1);
                    return Ok(None);
                }
                _ => {
                    return fault(
                        self.pos,
                        format!("expected ',' or '}}' after a member, got {}", self.got()),
                    )
                }
            }
        }
        let at = self.pos;
        if self.peek() != Some(b'"') {
            return fault(at, format!("expected a member name, got {}", self.got()));
        }
        let start = self.names.arena.len();
        let mut arena = std::mem::take(&mut self.names.arena);
        let read = self.string_into(&mut arena);
        self.names.arena = arena;
        read?;
        let span = (start, self.names.arena.len());
        let name = &self.names.arena[span.0..span.1];
        let earlier = &self.names.spans[object.mark.1..];
        let duplicate = match &mut object.many {
            Some(set) => !set.insert(name.to_vec()),
            None => {
                let found = earlier
                    .iter()
                    .any(|&(s, e)| &self.names.arena[s..e] == name);
                if !found && earlier.len() >= FEW_MEMBERS {
                    let mut set: HashSet<Vec<u8>> = earlier
                        .iter()
                        .map(|&(s, e)| self.names.arena[s..e].to_vec())
                        .collect();
                    set.insert(name.to_vec());
                    object.many = Some(set);
                }
                found
            }
        };
        if duplicate {
            let path = String::from_utf8_lossy(name).into_owned();
            return Err(Box::new(Fault {
                pos: at,
                path,
                message: "a duplicate member name; each name may appear once in an object"
                    .to_owned(),
            }));
        }
        let known = known.iter().position(|k| *k == name);
        if object.many.is_none() {
            self.names.spans.push(span);
        }
        object.members += 1;
        self.skip_whitespace();
        self.eat(b':', "':' after a member name")?;
        self.skip_whitespace();
        Ok(Some(Key { known, span, at }))
    }

    fn name(&self, key: &Key) -> String {
        String::from_utf8_lossy(&self.names.arena[key.span.0..key.span.1]).into_owned()
    }

    fn open_array(&mut self, depth: usize) -> Res<Array> {
        if depth > MAX_DEPTH {
            return fault(self.pos, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.pos += 1; // the caller saw `[`
        Ok(Array { depth, elements: 0 })
    }

    /// Positions the cursor at the next element of `array`; `false` after the closing bracket.
    fn next_element(&mut self, array: &mut Array) -> Res<bool> {
        self.skip_whitespace();
        if array.elements > 0 {
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(false);
                }
                _ => {
                    return fault(
                        self.pos,
                        format!("expected ',' or ']' after an element, got {}", self.got()),
                    )
                }
            }
        } else if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(false);
        }
        array.elements += 1;
        Ok(true)
    }

    /// The string at the cursor (which is at its `"`), unescaped and appended to `out`.
    #[inline]
    fn string_into(&mut self, out: &mut Vec<u8>) -> Res<()> {
        self.string::<true>(out)
    }

    #[inline]
    fn string<const KEEP: bool>(&mut self, out: &mut Vec<u8>) -> Res<()> {
        self.pos += 1;
        loop {
            let rest = &self.bytes[self.pos..];
            let plain = skip_plain(rest);
            let run = &rest[..plain];
            if !self.utf8_checked {
                if let Err(err) = simdutf8::compat::from_utf8(run) {
                    return fault(self.pos + err.valid_up_to(), "invalid UTF-8 in a string");
                }
            }
            if KEEP {
                out.extend_from_slice(run);
            }
            self.pos += plain;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let bytes = self.bytes;
                    let target = if KEEP { &mut *out } else { &mut self.scratch };
                    match unescape(&bytes[self.pos..], target) {
                        Some(used) => self.pos += used,
                        None => return Err(self.escape_fault()),
                    }
                    if !KEEP {
                        self.scratch.clear();
                    }
                }
                Some(byte) => {
                    return fault(
                        self.pos,
                        format!(
                            "a raw control character (byte {byte:#04x}) in a string; \
                             write it as \\u{byte:04x}"
                        ),
                    )
                }
                None => return fault(self.pos, "the string is not closed"),
            }
        }
    }

    /// Why the escape at the cursor is not one.
    fn escape_fault(&self) -> Box<Fault> {
        let escape = &self.bytes[self.pos..];
        let message = match escape.get(1) {
            None => "the string is not closed".to_owned(),
            Some(b'u') => match escape.get(2..6).and_then(hex4) {
                None => "\\u must be followed by four hex digits".to_owned(),
                Some(code) if (0xD800..0xE000).contains(&code) => format!(
                    "a lone surrogate \\u{code:04x}: a high surrogate (d800-dbff) must be \
                     followed by a low one (\\udc00-\\udfff)"
                ),
                // A well-formed `\u` escape that is not a surrogate always decodes.
                Some(code) => format!("invalid escape \\u{code:04x}"),
            },
            Some(&other) => format!(
                "invalid escape \\{}; JSON knows \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                other.escape_ascii()
            ),
        };
        Box::new(Fault {
            pos: self.pos,
            path: String::new(),
            message,
        })
    }

    /// A number in JSON's grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, read with
    /// correct rounding; one too large for a float64 is a fault.
    fn number(&mut self) -> Res<f64> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return fault(self.pos, format!("expected a digit, got {}", self.got())),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits_required()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits_required()?;
        }
        // The grammar above admits only ASCII, which `parse` reads with correct rounding.
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => fault(start, format!("{text} is out of the float64 range")),
        }
    }

    #[inline]
    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn digits_required(&mut self) -> Res<()> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return fault(self.pos, format!("expected a digit, got {}", self.got()));
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Res<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            fault(self.pos, format!("expected a value, got {}", self.got()))
        }
    }

    /// Any JSON value at `depth`, checked in full and dropped.
    pub fn skip_value(&mut self, depth: usize) -> Res<()> {
        match self.peek() {
            Some(b'"') => self.string::<false>(&mut Vec::new()),
            Some(b'{') => {
                let mut object = self.open_object(depth)?;
                while let Some(key) = self.next_key(&mut object, &[])? {
                    if let Err(f) = self.skip_value(depth + 1) {
                        return Err(f.in_member(&self.name(&key)));
                    }
                }
                Ok(())
            }
            Some(b'[') => {
                let mut array = self.open_array(depth)?;
                while self.next_element(&mut array)? {
                    self.skip_value(array.depth + 1)
                        .map_err(|f| f.in_element(array.elements - 1))?;
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => fault(self.pos, format!("expected a value, got {}", self.got())),
        }
    }

    /// A string the schema requires.
    pub fn required_string(&mut self, out: &mut Vec<u8>) -> Res<()> {
        if self.peek() != Some(b'"') {
            return self.expected("a string");
        }
        self.string_into(out)
    }

    /// A number the schema requires (not a string, bool or null).
    fn required_number(&mut self) -> Res<f64> {
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return self.expected("a number");
        }
        self.number()
    }

    /// One row (the object at the cursor) of `schema` appended to `out`; `names` are its
    /// members' ([`ROW_SCORED`], or [`ROW_PAIRED`] and then those of its [`super::Extra`]s,
    /// whose columns `out.extras` are); `kinds` are those of the rows before (set here as the
    /// row is read; the caller keeps them only if the whole row is valid). On a fault, `out`
    /// may hold part of the row: the caller rolls it back.
    pub fn row(
        &mut self,
        schema: Schema,
        names: &[&[u8]],
        kinds: &mut Kinds,
        out: &mut Columns,
    ) -> Res<()> {
        self.skip_whitespace();
        if self.peek() != Some(b'{') {
            return self.expected("a JSON object");
        }
        let start = self.pos;
        let mut seen = [false; 4];
        // Where each completion's value starts, and its kind.
        let mut completions = [(0, PromptKind::Text); 2];
        let first_messages = [out.chosen_messages.count(), out.rejected_messages.count()];
        let mut object = self.open_object(1)?;
        while let Some(key) = self.next_key(&mut object, names)? {
            let at = self.pos;
            let read = match (schema, key.known) {
                (_, Some(0)) => self.prompt(&mut kinds.prompt, out),
                (Schema::Scored, Some(1)) => self.responses(out),
                (Schema::Paired, Some(1)) => self.completion(Side::Chosen, kinds.completion, out),
                (Schema::Paired, Some(2)) => self.completion(Side::Rejected, kinds.completion, out),
                (Schema::Paired, Some(3)) => self.margin(out).map(|()| PromptKind::Text),
                (Schema::Paired, Some(id)) => {
                    let e = id - ROW_PAIRED.len();
                    let held = kinds.extras.is_none_or(|held| held >> e & 1 == 1);
                    self.extra(held, &mut out.extras[e])
                        .map(|()| PromptKind::Text)
                }
                _ => self.skip_value(2).map(|()| PromptKind::Text),
            };
            let kind = match read {
                Ok(kind) => kind,
                Err(f) => return Err(f.in_member(&self.name(&key))),
            };
            if let Some(id) = key.known.filter(|&id| id < seen.len()) {
                seen[id] = true;
                if matches!((schema, id), (Schema::Paired, 1 | 2)) {
                    completions[id - 1] = (at, kind);
                }
            }
        }
        let missing = |id: usize, what: &str| -> Res<()> {
            if seen[id] {
                return Ok(());
            }
            Err(Box::new(Fault {
                pos: start,
                path: String::from_utf8_lossy(names[id]).into_owned(),
                message: format!("missing; expected {what}"),
            }))
        };
        match schema {
            Schema::Scored => {
                missing(0, "the prompt (a string or a list of chat messages)")?;
                missing(1, "a list of responses {\"text\": ..., \"score\": ...}")?;
            }
            Schema::Paired => {
                missing(1, "a string or chat messages")?;
                missing(2, "a string or chat messages")?;
                if !seen[3] {
                    out.margin.push(0.0);
                    out.margin_valid.push(false);
                }
                let [(_, chosen), (rejected_at, rejected)] = completions;
                if chosen != rejected {
                    return fault(
                        rejected_at,
                        format!(
                            "expected {}, as chosen is, got {}",
                            chosen.name(),
                            rejected.name()
                        ),
                    )
                    .map_err(|f| f.in_member("rejected"));
                }
                kinds.completion = Some(chosen);
                // The extras this row has (null or not) are the file's, if it is the first.
                if kinds.extras.is_none() {
                    let rows = out.valid.len();
                    let has = out
                        .extras
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.len() > rows);
                    kinds.extras = Some(has.fold(0, |mask, (e, _)| mask | 1 << e));
                }
                match (seen[0], chosen) {
                    (false, PromptKind::Text) => missing(
                        0,
                        "the prompt (a string or a list of chat messages); only chosen and \
                         rejected as chat messages may leave it implicit in their shared \
                         first messages",
                    )?,
                    (false, PromptKind::Messages) => {
                        let at = [completions[0].0, completions[1].0];
                        implicit_prompt(start, at, first_messages, out)?;
                        kinds.prompt = Some(PromptKind::Messages);
                    }
                    (true, PromptKind::Messages) if kinds.prompt == Some(PromptKind::Text) => {
                        return fault(
                            completions[0].0,
                            "chat messages beside a string prompt; chat-message completions \
                             need a chat-message prompt",
                        )
                        .map_err(|f| f.in_member("chosen"));
                    }
                    (true, _) => {}
                }
            }
        }
        Ok(())
    }

    /// A prompt: a string or a list of chat messages, of the same kind as the rows before.
    fn prompt(&mut self, kind: &mut Option<PromptKind>, out: &mut Columns) -> Res<PromptKind> {
        let found = match self.peek() {
            Some(b'"') => PromptKind::Text,
            Some(b'[') => PromptKind::Messages,
            _ => return self.expected("a string or a list of chat messages"),
        };
        if let Some(expected) = *kind {
            if expected != found {
                return fault(
                    self.pos,
                    match expected {
                        PromptKind::Text => {
                            "expected a string prompt, like the rows before, got a list of chat \
                             messages"
                        }
                        PromptKind::Messages => {
                            "expected chat messages, like the rows before, got a string prompt"
                        }
                    },
                );
            }
        }
        match found {
            PromptKind::Text => self.string_into(&mut out.prompt.data)?,
            PromptKind::Messages => self.messages(&mut out.prompt_messages)?,
        }
        *kind = Some(found);
        Ok(found)
    }

    /// `chosen` or `rejected`: a string, a list of chat messages, or LMFlow's conversation
    /// object `{"messages": [...], "system": ...}` (chat messages, the system prompt first),
    /// of the kind of the rows before (`expected`).
    fn completion(
        &mut self,
        side: Side,
        expected: Option<PromptKind>,
        out: &mut Columns,
    ) -> Res<PromptKind> {
        let found = match self.peek() {
            Some(b'"') => PromptKind::Text,
            Some(b'[' | b'{') => PromptKind::Messages,
            _ => {
                return self.expected(
                    "a string, a list of chat messages or a conversation {\"messages\": [...]}",
                )
            }
        };
        if let Some(expected) = expected {
            if expected != found {
                return fault(
                    self.pos,
                    format!(
                        "expected {}, like the rows before, got {}",
                        expected.name(),
                        found.name()
                    ),
                );
            }
        }
        let (text, messages) = match side {
            Side::Chosen => (&mut out.chosen.data, &mut out.chosen_messages),
            Side::Rejected => (&mut out.rejected.data, &mut out.rejected_messages),
        };
        match self.peek() {
            Some(b'"') => self.string_into(text)?,
            Some(b'[') => self.messages(messages)?,
            _ => self.conversation(messages)?,
        }
        Ok(found)
    }

    /// LMFlow's conversation: `messages` (required), `system` (a string, or null for none:
    /// the conversation's first message, with the role `system`), `tools` (only null or an
    /// empty list: tools cannot be carried into the pair), other members checked and skipped.
    fn conversation(&mut self, out: &mut Messages) -> Res<()> {
        let start = self.pos;
        let first = out.count();
        let mut system: Option<Vec<u8>> = None;
        let mut seen_messages = false;
        let mut object = self.open_object(2)?;
        while let Some(key) = self.next_key(&mut object, CONVERSATION)? {
            let read = match key.known {
                Some(0) => {
                    seen_messages = true;
                    if self.peek() == Some(b'[') {
                        self.messages_at(out, 3)
                    } else {
                        self.expected("a list of chat messages")
                    }
                }
                Some(1) if self.bytes[self.pos..].starts_with(b"null") => {
                    self.pos += 4;
                    Ok(())
                }
                Some(1) => {
                    let mut text = Vec::new();
                    self.required_string(&mut text)
                        .map(|()| system = Some(text))
                }
                Some(2) => self.no_tools(),
                _ => self.skip_value(3),
            };
            if let Err(f) = read {
                return Err(f.in_member(&self.name(&key)));
            }
        }
        if !seen_messages {
            return fault(start, "missing; expected a list of chat messages")
                .map_err(|f| f.in_member("messages"));
        }
        if let Some(system) = system {
            out.insert_message(first, b"system", &system);
        }
        Ok(())
    }

    /// `tools`: null or `[]`.
    fn no_tools(&mut self) -> Res<()> {
        let at = self.pos;
        self.skip_value(3)?;
        let value: Vec<u8> = self.bytes[at..self.pos]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if value == b"null" || value == b"[]" {
            return Ok(());
        }
        fault(
            at,
            "tools cannot be carried into a preference pair; expected null or an empty list",
        )
    }

    /// A list of chat messages, a member of the row.
    fn messages(&mut self, out: &mut Messages) -> Res<()> {
        self.messages_at(out, 2)
    }

    /// A list of chat messages at `depth`.
    fn messages_at(&mut self, out: &mut Messages, depth: usize) -> Res<()> {
        let mut array = self.open_array(depth)?;
        while self.next_element(&mut array)? {
            self.message(out, depth + 1)
                .map_err(|f| f.in_element(array.elements - 1))?;
        }
        Ok(())
    }

    /// `{"role": "...", "content": "..."}` and nothing else.
    fn message(&mut self, out: &mut Messages, depth: usize) -> Res<()> {
        if self.peek() != Some(b'{') {
            return self.expected("a chat message {\"role\": ..., \"content\": ...}");
        }
        let start = self.pos;
        let mut seen = [false; 2];
        let mut object = self.open_object(depth)?;
        while let Some(key) = self.next_key(&mut object, MESSAGE)? {
            let read = match key.known {
                Some(0) => self.required_string(&mut out.roles.data),
                Some(1) => self.required_string(&mut out.contents.data),
                _ => {
                    let name = self.name(&key);
                    return Err(Box::new(Fault {
                        pos: key.at,
                        path: name,
                        message: "a chat message has only \"role\" and \"content\"".to_owned(),
                    }));
                }
            };
            if let Err(f) = read {
                return Err(f.in_member(&self.name(&key)));
            }
            if let Some(id) = key.known {
                seen[id] = true;
            }
        }
        for (id, name) in ["role", "content"].into_iter().enumerate() {
            if !seen[id] {
                return fault(start, "missing; expected a string").map_err(|f| f.in_member(name));
            }
        }
        out.end_message();
        Ok(())
    }

    fn responses(&mut self, out: &mut Columns) -> Res<PromptKind> {
        if self.peek() != Some(b'[') {
            return self.expected("a list of responses {\"text\": ..., \"score\": ...}");
        }
        let mut array = self.open_array(2)?;
        while self.next_element(&mut array)? {
            self.response(out)
                .map_err(|f| f.in_element(array.elements - 1))?;
        }
        // Not a completion: the kind is not used.
        Ok(PromptKind::Text)
    }

    /// `{"text": "...", "score": number}`; other members skipped.
    fn response(&mut self, out: &mut Columns) -> Res<()> {
        if self.peek() != Some(b'{') {
            return self.expected("a response {\"text\": ..., \"score\": ...}");
        }
        let start = self.pos;
        let mut seen = [false; 2];
        let mut object = self.open_object(3)?;
        while let Some(key) = self.next_key(&mut object, RESPONSE)? {
            let read = match key.known {
                Some(0) => self.required_string(&mut out.texts.data),
                Some(1) => self.required_number().map(|score| out.scores.push(score)),
                _ => self.skip_value(4),
            };
            if let Err(f) = read {
                return Err(f.in_member(&self.name(&key)));
            }
            if let Some(id) = key.known {
                seen[id] = true;
            }
        }
        for (id, (name, what)) in [("text", "a string"), ("score", "a number")]
            .into_iter()
            .enumerate()
        {
            if !seen[id] {
                return fault(start, format!("missing; expected {what}"))
                    .map_err(|f| f.in_member(name));
            }
        }
        out.texts.end_value();
        Ok(())
    }

    /// An optional member ([`super::Extra`]) of `column`'s kind, or null, pushed to it. One
    /// that is not `held` (the first valid row lacks it, so batches have no column for it)
    /// must be null: a value there would be dropped.
    fn extra(&mut self, held: bool, column: &mut ExtraColumn) -> Res<()> {
        if self.bytes[self.pos..].starts_with(b"null") {
            self.pos += 4;
            column.push_null();
            return Ok(());
        }
        if !held {
            return fault(
                self.pos,
                "a value with no column to go to: the first row lacks this member, and a \
                 file's optional members are those of its first row (give it there, or null)",
            );
        }
        match &mut column.values {
            ExtraValues::Float64(values) => values.push(self.required_number()?),
            ExtraValues::Int64(values) => values.push(self.integer()?),
            ExtraValues::Utf8(values) => {
                self.required_string(&mut values.data)?;
                values.end_value();
            }
        }
        column.valid.push(true);
        Ok(())
    }

    /// An integer in the int64 range, written without fraction or exponent.
    fn integer(&mut self) -> Res<i64> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return self.expected("an integer");
        }
        self.number()?;
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        match text.parse::<i64>() {
            Ok(value) => Ok(value),
            Err(_) => fault(
                start,
                format!("expected an integer in the int64 range, got {text}"),
            ),
        }
    }

    /// `margin`: a number, or null for none.
    fn margin(&mut self, out: &mut Columns) -> Res<()> {
        if self.bytes[self.pos..].starts_with(b"null") {
            self.pos += 4;
            out.margin.push(0.0);
            out.margin_valid.push(false);
            return Ok(());
        }
        let margin = self.required_number()?;
        out.margin.push(margin);
        out.margin_valid.push(true);
        Ok(())
    }
}

/// Parses the row `bytes[start..end]` (a line or an instance) into `out`: one JSON object of
/// `schema` (its member names `members`, as for [`Cursor::row`]), with only whitespace around
/// it.
#[allow(clippy::too_many_arguments)]
pub(super) fn row(
    bytes: &[u8],
    start: usize,
    end: usize,
    schema: Schema,
    members: &[&[u8]],
    kinds: &mut Kinds,
    out: &mut Columns,
    names: &mut Names,
) -> Res<()> {
    let mut cursor = Cursor::new(&bytes[..end], start, names);
    // One check of the whole row (a few GB/s) instead of one per run of each string (short
    // runs between escapes cost far more); a row that fails it is read checking each string,
    // which finds the first invalid byte, or the fault of the grammar before it.
    cursor.utf8_checked = simdutf8::basic::from_utf8(&bytes[start..end]).is_ok();
    cursor.row(schema, members, kinds, out)?;
    if !cursor.at_end() {
        return fault(
            cursor.pos,
            format!(
                "expected the end of the row after its object, got {}",
                cursor.got()
            ),
        );
    }
    Ok(())
}

/// TRL's implicit prompt: the messages chosen and rejected share at their start (from message
/// `first[0]` of `chosen_messages`, `first[1]` of `rejected_messages`) move to the row's
/// prompt. There must be some, and each completion must go on past them. `row` and `at` are
/// where the row and the completions start, for faults.
fn implicit_prompt(row: usize, at: [usize; 2], first: [usize; 2], out: &mut Columns) -> Res<()> {
    let lengths = [
        out.chosen_messages.count() - first[0],
        out.rejected_messages.count() - first[1],
    ];
    let shared = (0..lengths[0].min(lengths[1]))
        .take_while(|&i| {
            out.chosen_messages.message(first[0] + i) == out.rejected_messages.message(first[1] + i)
        })
        .count();
    if shared == 0 {
        return Err(Box::new(Fault {
            pos: row,
            path: "prompt".to_owned(),
            message: "missing, and chosen and rejected share no first message to take it from; \
                      give a prompt, or chosen and rejected as whole conversations that start \
                      alike"
                .to_owned(),
        }));
    }
    for (k, side) in [Side::Chosen, Side::Rejected].into_iter().enumerate() {
        if lengths[k] == shared {
            return Err(Box::new(Fault {
                pos: at[k],
                path: side.name().to_owned(),
                message: format!(
                    "is all prompt: its {shared} messages are the ones both completions start \
                     with; a completion must go on past the shared prompt"
                ),
            }));
        }
    }
    out.chosen_messages
        .take_messages(first[0], shared, Some(&mut out.prompt_messages));
    out.rejected_messages.take_messages(first[1], shared, None);
    Ok(())
}
