use dpov2_json::{parse_scored_lines, ScoredColumns};
use proptest::prelude::*;

/// An instance as (prompt, [(text, score)]).
type Row = (String, Vec<(String, f64)>);

/// The instances of a parse.
fn rows(columns: &ScoredColumns) -> Vec<Row> {
    let text = |data: &[u8], offsets: &[i32], i: usize| {
        String::from_utf8(data[offsets[i] as usize..offsets[i + 1] as usize].to_vec()).unwrap()
    };
    (0..columns.len())
        .map(|i| {
            let responses = (columns.output_offsets[i]..columns.output_offsets[i + 1])
                .map(|k| {
                    let k = k as usize;
                    (
                        text(&columns.text_data, &columns.text_offsets, k),
                        columns.scores[k],
                    )
                })
                .collect();
            (
                text(&columns.prompt_data, &columns.prompt_offsets, i),
                responses,
            )
        })
        .collect()
}

fn parse(input: &str) -> Option<Vec<Row>> {
    parse_scored_lines(input.as_bytes(), 1).map(|c| rows(&c))
}

#[test]
fn simple_lines_become_columns() {
    let input = concat!(
        r#"{"input": "p\"1\u00e9", "output": [{"text": "a\nb", "score": 1}, {"score": -2.5e-1, "text": "\ud83d\ude00"}]}"#,
        "\n\n  \r\n",
        r#"{"id": {"x": [1, true, null, "s\\"]}, "output": [], "input": ""}"#,
        "\n",
        r#"{"input":"q","output":[{"text":"t","score":0,"extra":[{}]}]}"#,
    );
    assert_eq!(
        parse(input).unwrap(),
        vec![
            (
                "p\"1é".to_string(),
                vec![("a\nb".to_string(), 1.0), ("😀".to_string(), -0.25)]
            ),
            (String::new(), vec![]),
            ("q".to_string(), vec![("t".to_string(), 0.0)]),
        ]
    );
}

#[test]
fn anything_outside_the_simple_case_is_left_to_the_general_parser() {
    let ok = r#"{"input": "p", "output": [{"text": "a", "score": 1}]}"#;
    assert!(parse(ok).is_some());
    for line in [
        r#"{"input": [{"role": "user", "content": "hi"}], "output": []}"#, // chat prompt
        r#"{"input": null, "output": []}"#,
        r#"{"output": []}"#,
        r#"{"input": "p", "output": "x"}"#,
        r#"{"input": "p", "output": [{"text": "a"}]}"#,
        r#"{"input": "p", "output": [{"text": "a", "score": "1"}]}"#,
        r#"{"input": "p", "output": [{"text": "a", "score": NaN}]}"#,
        r#"{"input": "p", "output": [{"text": "a", "score": 1e400}]}"#,
        r#"{"input": "p", "output": [{"text": "a", "score": 01}]}"#,
        r#"{"input": "p", "output": [{"text": "a", "score": 1.}]}"#,
        r#"{"input": "p", "output": [{"text": "a", "score": +1}]}"#,
        r#"{"input": "p", "output": [{"text": 3, "score": 1}]}"#,
        r#"{"input": "p", "input": "q", "output": []}"#,
        r#"{"input": "p", "output": [], "x": [1 2]}"#,
        r#"{"input": "p", "output": [], "x": tru}"#,
        r#"{"input": "p\ud800", "output": []}"#,
        r#"{"input": "p\x", "output": []}"#,
        r#"{"input": "p", "output": []} {}"#,
        r#"{"input": "p", "output": [],}"#,
        r#"[1, 2]"#,
        r#"{"input": "p", "output": []"#,
    ] {
        assert!(parse(line).is_none(), "accepted {line}");
        assert!(
            parse(&format!("{ok}\n{line}\n{ok}")).is_none(),
            "accepted {line} in a chunk"
        );
    }
    assert!(parse_scored_lines(b"{\"input\": \"\xff\", \"output\": []}", 1).is_none());
    assert!(
        parse("{\"input\": \"a\tb\", \"output\": []}").is_none(),
        "raw tab in a string"
    );
}

#[test]
fn empty_chunks_have_no_instances() {
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse("\n \n").unwrap(), vec![]);
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) > 0xFFFF => {
                let v = c as u32 - 0x10000;
                out.push_str(&format!(
                    "\\u{:04x}\\u{:04x}",
                    0xD800 + (v >> 10),
                    0xDC00 + (v & 0x3FF)
                ));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #[test]
    fn any_number_of_parts_gives_the_same_columns(
        instances in prop::collection::vec(
            ("(?s).{0,12}", prop::collection::vec(("(?s).{0,12}", -1e6f64..1e6), 0..4)),
            0..10,
        ),
        parts in 1usize..6,
    ) {
        let lines: Vec<String> = instances
            .iter()
            .map(|(prompt, responses)| {
                let responses: Vec<String> = responses
                    .iter()
                    .map(|(t, s)| format!("{{\"score\": {s:?}, \"text\": {}}}", json_string(t)))
                    .collect();
                format!("{{\"input\": {}, \"output\": [{}]}}", json_string(prompt), responses.join(", "))
            })
            .collect();
        let chunk = lines.join("\n");
        let parsed = parse_scored_lines(chunk.as_bytes(), parts).unwrap();
        let one = parse_scored_lines(chunk.as_bytes(), 1).unwrap();
        prop_assert_eq!(&parsed, &one);
        let expected: Vec<Row> = instances
            .iter()
            .map(|(p, r)| (p.clone(), r.iter().map(|(t, s)| (t.clone(), *s)).collect()))
            .collect();
        prop_assert_eq!(rows(&parsed), expected);
    }
}
