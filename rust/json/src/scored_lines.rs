//! A parser for the common case of scored instances in JSON Lines, straight to columns.
//!
//! Each line `{"input": "prompt", "output": [{"text": "...", "score": 1.5}, ...]}` (members
//! in any order, other members skipped) becomes entries of flat columns: prompt bytes and
//! offsets, response text bytes and offsets, scores, and per-instance offsets into the
//! responses. That is exactly the Arrow layout of the scored table, so no value is ever an
//! object of its own.
//!
//! It accepts only what it can convert exactly: string prompts, and responses whose `text`
//! is a string and `score` a finite number. Anything else (a chat-message prompt, a missing
//! or null field, malformed JSON, a duplicate member) makes it return `None`, and the caller
//! falls back to a general JSON parser that can also say what is wrong. Strings must be valid
//! UTF-8 (outside strings JSON is ASCII), and JSON's grammar is checked in full, skipped
//! members included, so what is accepted here is what a strict parser would accept.

use rayon::prelude::*;

use crate::text::{skip_plain_utf8, unescape};

/// Deepest nesting accepted in skipped members.
const MAX_DEPTH: usize = 256;

/// Columns of the instances of a chunk, with Arrow's 32-bit offsets (so chunks are limited to
/// 2 GiB): instance `i` has the prompt
/// `prompt_data[prompt_offsets[i]..prompt_offsets[i + 1]]` and the responses
/// `output_offsets[i]..output_offsets[i + 1]`; response `k` the text
/// `text_data[text_offsets[k]..text_offsets[k + 1]]` and the score `scores[k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredColumns {
    pub prompt_offsets: Vec<i32>,
    pub prompt_data: Vec<u8>,
    pub output_offsets: Vec<i32>,
    pub text_offsets: Vec<i32>,
    pub text_data: Vec<u8>,
    pub scores: Vec<f64>,
}

impl ScoredColumns {
    /// Room for the columns of `bytes` of JSON (texts are never longer than their JSON),
    /// and, in the first columns of a chunk, for the rest of the chunk's `total` bytes.
    fn with_capacity(bytes: usize, total: usize) -> Self {
        let responses = bytes / 64;
        Self {
            prompt_offsets: Vec::with_capacity(responses / 4 + 1),
            prompt_data: Vec::with_capacity(total / 4),
            output_offsets: Vec::with_capacity(responses / 4 + 1),
            text_offsets: Vec::with_capacity(responses + 1),
            text_data: Vec::with_capacity(total),
            scores: Vec::with_capacity(responses),
        }
    }

    fn start(&mut self) {
        self.prompt_offsets.push(0);
        self.output_offsets.push(0);
        self.text_offsets.push(0);
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.prompt_offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other`'s instances after these.
    fn extend(&mut self, other: ScoredColumns) {
        shift_extend(&mut self.prompt_offsets, &other.prompt_offsets);
        self.prompt_data.extend_from_slice(&other.prompt_data);
        shift_extend(&mut self.output_offsets, &other.output_offsets);
        shift_extend(&mut self.text_offsets, &other.text_offsets);
        self.text_data.extend_from_slice(&other.text_data);
        self.scores.extend_from_slice(&other.scores);
    }
}

fn shift_extend(offsets: &mut Vec<i32>, more: &[i32]) {
    let base = *offsets.last().unwrap_or(&0);
    offsets.extend(more[1..].iter().map(|o| o + base));
}

/// The instances of `chunk` (whole lines; blank lines skipped) as columns, or `None` if any
/// line is outside the simple case (or the chunk is over 2 GiB). Up to `parts` pieces of the chunk, cut at line ends, are
/// parsed in parallel.
///
/// All output memory is allocated up front by the calling thread: memory freed by earlier
/// chunks is then reused, where allocations in the worker threads would each fault in fresh
/// pages (costly, and serialised, in some virtual machines).
pub fn parse_scored_lines(chunk: &[u8], parts: usize) -> Option<ScoredColumns> {
    if chunk.len() > i32::MAX as usize {
        return None;
    }
    let pieces = split_lines(chunk, parts.max(1));
    let mut outputs: Vec<ScoredColumns> = pieces
        .iter()
        .enumerate()
        .map(|(k, piece)| {
            ScoredColumns::with_capacity(
                piece.len(),
                if k == 0 { chunk.len() } else { piece.len() },
            )
        })
        .collect();
    let parsed: Vec<Option<()>> = pieces
        .par_iter()
        .zip(outputs.par_iter_mut())
        .map(|(piece, out)| parse_piece(piece, out))
        .collect();
    parsed.into_iter().collect::<Option<Vec<()>>>()?;
    let mut outputs = outputs.into_iter();
    let mut columns = outputs.next()?;
    for more in outputs {
        columns.extend(more);
    }
    Some(columns)
}

/// `chunk` cut into at most `parts` pieces of about equal size, each ending at a line end.
fn split_lines(chunk: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = chunk;
    for k in (1..parts).rev() {
        let target = rest.len() / (k + 1);
        match rest[target..].iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let (piece, tail) = rest.split_at(target + newline + 1);
                pieces.push(piece);
                rest = tail;
            }
            None => break,
        }
    }
    pieces.push(rest);
    pieces
}

fn parse_piece(piece: &[u8], out: &mut ScoredColumns) -> Option<()> {
    out.start();
    let mut cursor = Cursor {
        bytes: piece,
        pos: 0,
    };
    while cursor.pos < piece.len() {
        cursor.skip_whitespace();
        match cursor.peek() {
            None => break,
            Some(b'\n') => cursor.pos += 1, // a blank line
            Some(_) => {
                cursor.instance(out)?;
                cursor.skip_whitespace();
                match cursor.peek() {
                    None => {}
                    Some(b'\n') => cursor.pos += 1,
                    Some(_) => return None, // more than one value on the line
                }
            }
        }
    }
    Some(())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Whitespace within a line (a newline ends the instance).
    #[inline]
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// One instance; its members in any order, `input` and `output` exactly once.
    fn instance(&mut self, out: &mut ScoredColumns) -> Option<()> {
        let (mut has_input, mut has_output) = (false, false);
        let responses_before = out.scores.len();
        self.members(|cursor, key| match key {
            b"input" if !has_input => {
                has_input = true;
                cursor.string_into(&mut out.prompt_data)?;
                out.prompt_offsets.push(out.prompt_data.len() as i32);
                Some(())
            }
            b"output" if !has_output => {
                has_output = true;
                cursor.responses(out)
            }
            b"input" | b"output" => None,
            _ => cursor.skip_value(0),
        })?;
        if !(has_input && has_output) {
            return None;
        }
        let responses = (out.scores.len() - responses_before) as i32;
        let last = *out.output_offsets.last()?;
        out.output_offsets.push(last + responses);
        Some(())
    }

    fn responses(&mut self, out: &mut ScoredColumns) -> Option<()> {
        self.elements(|cursor| cursor.response(out))
    }

    fn response(&mut self, out: &mut ScoredColumns) -> Option<()> {
        let mut score = None;
        let mut has_text = false;
        self.members(|cursor, key| match key {
            b"text" if !has_text => {
                has_text = true;
                cursor.string_into(&mut out.text_data)?;
                out.text_offsets.push(out.text_data.len() as i32);
                Some(())
            }
            b"score" if score.is_none() => {
                score = Some(cursor.number()?);
                Some(())
            }
            b"text" | b"score" => None,
            _ => cursor.skip_value(0),
        })?;
        out.scores.push(score.filter(|s| s.is_finite())?);
        has_text.then_some(())
    }

    /// An array, calling `element` positioned at each element.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.skip_whitespace();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            element(self)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object, calling `member` with each key, positioned at the member's value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.skip_whitespace();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            let key = self.key()?;
            self.skip_whitespace();
            self.eat(b':')?;
            self.skip_whitespace();
            member(self, key)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A member name without escapes (names with escapes are left to the general parser).
    fn key(&mut self) -> Option<&'a [u8]> {
        let bytes: &'a [u8] = self.bytes;
        self.eat(b'"')?;
        let start = self.pos;
        let len = skip_plain_utf8(&bytes[start..])?;
        self.pos += len;
        self.eat(b'"')?;
        Some(&bytes[start..start + len])
    }

    /// A JSON string, unescaped into `out`.
    fn string_into(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let rest = &self.bytes[self.pos..];
            let plain = skip_plain_utf8(rest)?;
            out.extend_from_slice(&rest[..plain]);
            self.pos += plain;
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => self.pos += unescape(&self.bytes[self.pos..], out)?,
                _ => return None, // a raw control character
            }
        }
    }

    /// A number in JSON's grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, read
    /// with correct rounding.
    fn number(&mut self) -> Option<f64> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.digits_required()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits_required()?;
        }
        std::str::from_utf8(&self.bytes[start..self.pos])
            .ok()?
            .parse()
            .ok()
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn digits_required(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// Any JSON value, checked and discarded.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string_into(&mut Vec::new()),
            b'{' => self.members(|cursor, _| cursor.skip_value(depth + 1)),
            b'[' => self.elements(|cursor| cursor.skip_value(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }
}
