use dpov2_json::{Chunk, InstanceSplitter, SplitError};
use proptest::prelude::*;
use std::io::Read;

/// All chunks of `input`, at most `max` instances each.
fn split(input: &[u8], max: usize) -> Result<Vec<Chunk>, SplitError> {
    let mut splitter = InstanceSplitter::new(input);
    let mut chunks = Vec::new();
    while let Some(chunk) = splitter.next_chunk(max, usize::MAX)? {
        chunks.push(chunk);
    }
    Ok(chunks)
}

fn lines(input: &[u8], max: usize) -> Vec<String> {
    split(input, max)
        .unwrap()
        .iter()
        .flat_map(|c| {
            String::from_utf8(c.lines.clone())
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn error(input: &[u8]) -> String {
    split(input, 10).unwrap_err().to_string()
}

#[test]
fn instances_become_lines_with_newlines_between_tokens_as_spaces() {
    let input = b"{\n  \"type\": \"text_to_scored_textlist\",\n  \"instances\": [\n    {\"input\": \"a\\nb\",\n     \"output\": []},\n    {\"input\": \"}]\\\"\"}\n  ]\n}\n";
    assert_eq!(
        lines(input, 10),
        vec![
            "{\"input\": \"a\\nb\",      \"output\": []}",
            "{\"input\": \"}]\\\"\"}",
        ]
    );
    let mut splitter = InstanceSplitter::new(&input[..]);
    splitter.next_chunk(1, usize::MAX).unwrap();
    assert_eq!(splitter.dataset_type(), Some("text_to_scored_textlist"));
}

#[test]
fn chunks_hold_at_most_the_asked_number() {
    let input = br#"{"instances": [{"a": 1}, {"a": 22}, {"a": 333}], "type": "t"}"#;
    let chunks = split(input, 2).unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!((chunks[0].count, chunks[1].count), (2, 1));
    assert_eq!(chunks[0].lines, b"{\"a\": 1}\n{\"a\": 22}\n");
}

#[test]
fn chunks_stop_once_they_reach_the_byte_limit() {
    let input = br#"{"instances": [{"a": 1}, {"a": 22}, {"a": 333}]}"#;
    let mut splitter = InstanceSplitter::new(&input[..]);
    let first = splitter.next_chunk(10, 12).unwrap().unwrap();
    assert_eq!((first.count, first.lines.len()), (2, 19));
    assert_eq!(splitter.next_chunk(10, 1).unwrap().unwrap().count, 1);
    assert_eq!(splitter.next_chunk(10, 1).unwrap(), None);
}

#[test]
fn type_after_instances_and_other_members_are_read_or_skipped() {
    let input = br#"{"meta": {"x": [1, "]"]}, "instances": [], "type": "paired_text_to_text"}"#;
    let mut splitter = InstanceSplitter::new(&input[..]);
    assert_eq!(splitter.next_chunk(5, usize::MAX).unwrap(), None);
    assert_eq!(splitter.dataset_type(), Some("paired_text_to_text"));
    assert_eq!(splitter.bytes_read(), input.len() as u64);
}

#[test]
fn escaped_type_is_decoded() {
    let input = br#"{"type": "t\u00e9\ud83d\ude00\"", "instances": []}"#;
    let mut splitter = InstanceSplitter::new(&input[..]);
    splitter.next_chunk(5, usize::MAX).unwrap();
    assert_eq!(splitter.dataset_type(), Some("t\u{e9}\u{1F600}\""));
}

#[test]
fn structural_errors_name_the_byte_and_row() {
    assert!(error(b"").contains("empty file"), "{}", error(b""));
    assert!(error(b"  \n").contains("empty file"));
    assert!(error(b"[{}]").contains("JSON array"));
    assert_eq!(
        error(br#"{"instances": [{"a": 1}, {"a": "#),
        "row 1 (byte 31): the file ends inside the instance that starts at byte 25"
    );
    assert_eq!(
        error(br#"{"instances": [{"a": 1} {"a": 2}]}"#),
        "row 1 (byte 24): expected ',' or ']' after an instance, got '{'"
    );
    assert_eq!(
        error(b"{\"instances\": [{\"a\": \"x\ny\"}]}"),
        "row 0 (byte 23): a raw control character (0x0a) inside a string; JSON requires it \
         escaped (\\n, \\u0000...)"
    );
    assert!(error(br#"{"type": "t"}"#).contains("no \"instances\" array"));
    assert!(error(br#"{"instances": []} x"#).contains("unexpected data after"));
    assert!(error(br#"{"instances": [], "instances": []}"#).contains("second \"instances\""));
    assert!(error(br#"{"type": 3, "instances": []}"#).contains("\"type\" must be a string"));
    assert!(error(br#"{"instances": [1, }]}"#).contains("expected a value, got '}'"));
}

#[test]
fn scalars_are_passed_on_for_the_parser_to_reject() {
    assert_eq!(
        lines(br#"{"instances": [1, "s", null, true]}"#, 10),
        vec!["1", "\"s\"", "null", "true"]
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    assert_eq!(lines(b"\xEF\xBB\xBF{\"instances\": [{}]}", 10), vec!["{}"]);
}

/// Hands out at most `step` bytes per read, to cross block boundaries everywhere.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #[test]
    fn any_split_of_the_input_gives_the_same_lines(
        texts in prop::collection::vec(".{0,40}", 0..12),
        step in 1usize..17,
        max in 1usize..5,
        max_bytes in 1usize..300,
    ) {
        let instances: Vec<String> = texts
            .iter()
            .map(|t| format!("{{\"input\": {},\n \"output\": [{{\"text\": {}, \"score\": 1.5}}]}}", json_string(t), json_string(t)))
            .collect();
        let input = format!("{{\"type\": \"x\", \"instances\": [\n{}\n]}}", instances.join(",\n"));
        let mut splitter = InstanceSplitter::new(Trickle { data: input.as_bytes(), step });
        let mut got = Vec::new();
        while let Some(chunk) = splitter.next_chunk(max, max_bytes).unwrap() {
            prop_assert!(chunk.count <= max);
            let last_line = chunk.lines[..chunk.lines.len() - 1].iter().rposition(|&b| b == b'\n');
            prop_assert!(last_line.map_or(true, |end| end + 1 < max_bytes), "went past max_bytes");
            got.extend(String::from_utf8(chunk.lines).unwrap().lines().map(String::from));
        }
        let expected: Vec<String> = instances.iter().map(|i| i.replace('\n', " ")).collect();
        prop_assert_eq!(got, expected);
    }
}
