//! Shared by the reader tests: reading a whole input and turning batches back into rows.

#![allow(dead_code)] // each test file uses its own part

use std::io::Read;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use dpov2_json::{Batch, Framing, Problem, ReadError, ReadOptions, Reader, Schema};

pub fn options(framing: Framing, schema: Schema) -> ReadOptions {
    ReadOptions {
        framing,
        schema,
        max_rows: 1000,
        max_bytes: 1 << 20,
    }
}

pub fn read_all(input: &[u8], options: ReadOptions) -> Result<Vec<Batch>, ReadError> {
    read_from(input, options)
}

pub fn read_from<R: Read + Send>(input: R, options: ReadOptions) -> Result<Vec<Batch>, ReadError> {
    let mut reader = Reader::new(input, options);
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// A reader handing out its bytes in pieces of the given sizes (cycled), as pipes do.
pub struct Chunky<'a> {
    pub data: &'a [u8],
    pub sizes: Vec<usize>,
    pub next: usize,
}

impl Read for Chunky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Messages(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub input: Prompt,
    pub output: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub prompt: Prompt,
    pub chosen: Prompt,
    pub rejected: Prompt,
    pub margin: Option<f64>,
}

/// Value `i` of a prompt or completion column.
fn prompt(column: &ArrayRef, i: usize) -> Prompt {
    match column.data_type() {
        DataType::Utf8 => Prompt::Text(column.as_string::<i32>().value(i).to_owned()),
        DataType::List(_) => {
            let messages = column.as_list::<i32>().value(i);
            let messages = messages.as_struct();
            let roles = messages.column(0).as_string::<i32>();
            let contents = messages.column(1).as_string::<i32>();
            Prompt::Messages(
                (0..messages.len())
                    .map(|k| (roles.value(k).to_owned(), contents.value(k).to_owned()))
                    .collect(),
            )
        }
        other => panic!("prompt or completion column of type {other}"),
    }
}

/// Whether the prompt of row `i` is null: a Null-typed column (no row fixed the prompt kind
/// yet) has no validity bitmap, so `is_null` alone says no.
fn prompt_is_null(prompts: &dyn Array, i: usize) -> bool {
    prompts.data_type().is_null() || prompts.is_null(i)
}

pub fn scored_rows(batches: &[Batch]) -> Vec<Option<Scored>> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = &batch.columns;
        assert_eq!(columns.num_columns(), 2);
        let input = columns.column(0);
        let output = columns.column(1).as_list::<i32>();
        for i in 0..columns.num_rows() {
            assert_eq!(prompt_is_null(input, i), output.is_null(i), "row {i}");
            if output.is_null(i) {
                rows.push(None);
                continue;
            }
            let responses = output.value(i);
            let responses = responses.as_struct();
            let texts = responses.column(0).as_string::<i32>();
            let scores = responses.column(1).as_primitive::<Float64Type>();
            rows.push(Some(Scored {
                input: prompt(input, i),
                output: (0..responses.len())
                    .map(|k| (texts.value(k).to_owned(), scores.value(k)))
                    .collect(),
            }));
        }
    }
    rows
}

pub fn paired_rows(batches: &[Batch]) -> Vec<Option<Paired>> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = &batch.columns;
        assert_eq!(columns.num_columns(), 4);
        let (chosen, rejected) = (columns.column(1), columns.column(2));
        let margin = columns.column(3).as_primitive::<Float64Type>();
        for i in 0..columns.num_rows() {
            if prompt_is_null(chosen, i) {
                assert!(
                    prompt_is_null(rejected, i)
                        && margin.is_null(i)
                        && prompt_is_null(columns.column(0), i)
                );
                rows.push(None);
                continue;
            }
            rows.push(Some(Paired {
                prompt: prompt(columns.column(0), i),
                chosen: prompt(chosen, i),
                rejected: prompt(rejected, i),
                margin: margin.is_valid(i).then(|| margin.value(i)),
            }));
        }
    }
    rows
}

pub fn problems(batches: &[Batch]) -> Vec<Problem> {
    batches.iter().flat_map(|b| b.problems.clone()).collect()
}

/// The one problem of a single-row input.
pub fn only_problem(input: &[u8], options: ReadOptions) -> Problem {
    let batches = read_all(input, options).unwrap_or_else(|e| panic!("{e}: {input:?}"));
    let mut problems = problems(&batches);
    assert_eq!(
        problems.len(),
        1,
        "{:?}: {problems:?}",
        String::from_utf8_lossy(input)
    );
    problems.remove(0)
}

/// A JSON string literal of `text`; with `escape_all`, every non-ASCII character as `\u`
/// escapes (surrogate pairs beyond the BMP), so both paths of the reader are exercised.
pub fn quote(text: &str, escape_all: bool) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if escape_all && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn prompt_json(prompt: &Prompt, escape_all: bool) -> String {
    match prompt {
        Prompt::Text(text) => quote(text, escape_all),
        Prompt::Messages(messages) => {
            let items: Vec<String> = messages
                .iter()
                .map(|(role, content)| {
                    format!(
                        "{{\"role\": {}, \"content\": {}}}",
                        quote(role, escape_all),
                        quote(content, escape_all)
                    )
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

pub fn scored_json(row: &Scored, escape_all: bool) -> String {
    let output: Vec<String> = row
        .output
        .iter()
        .map(|(text, score)| {
            format!(
                "{{\"text\":{},\"score\":{score:?}}}",
                quote(text, escape_all)
            )
        })
        .collect();
    format!(
        "{{\"input\": {}, \"output\": [{}]}}",
        prompt_json(&row.input, escape_all),
        output.join(",")
    )
}

pub fn paired_json(row: &Paired, escape_all: bool) -> String {
    let margin = match row.margin {
        Some(margin) => format!(", \"margin\": {margin:?}"),
        None => String::new(),
    };
    format!(
        "{{\"prompt\": {}, \"chosen\": {}, \"rejected\": {}{margin}}}",
        prompt_json(&row.prompt, escape_all),
        prompt_json(&row.chosen, escape_all),
        prompt_json(&row.rejected, escape_all),
    )
}

/// `rows` (JSON texts) framed as JSON Lines or as an LMFlow object, and each row's offset.
pub fn frame(rows: &[String], framing: Framing) -> (Vec<u8>, Vec<usize>) {
    let mut out = String::new();
    let mut starts = Vec::new();
    match framing {
        Framing::Lines => {
            for row in rows {
                starts.push(out.len());
                out.push_str(row);
                out.push('\n');
            }
        }
        Framing::Lmflow => {
            out.push_str("{\"instances\": [\n");
            for (k, row) in rows.iter().enumerate() {
                if k > 0 {
                    out.push_str(",\n  ");
                }
                starts.push(out.len());
                out.push_str(row);
            }
            out.push_str("\n], \"type\": \"text_to_scored_textlist\"}\n");
        }
    }
    (out.into_bytes(), starts)
}
