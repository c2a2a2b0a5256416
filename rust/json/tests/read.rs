//! The reader's rules, one by one, through both framings and both schemas.

mod read_support;

use std::time::{Duration, Instant};

use dpov2_json::{Batch, Extra, ExtraKind, Framing, ReadError, Reader, Schema, MAX_EXTRAS};
use read_support::*;

const FRAMINGS: [Framing; 2] = [Framing::Lines, Framing::Lmflow];

fn text(s: &str) -> Prompt {
    Prompt::Text(s.to_owned())
}

fn scored(input: Prompt, output: &[(&str, f64)]) -> Scored {
    Scored {
        input,
        output: output.iter().map(|&(t, s)| (t.to_owned(), s)).collect(),
    }
}

#[test]
fn scored_rows_come_out_as_columns_in_both_framings() {
    let rows = [
        r#"{"input": "hi", "output": [{"text": "a", "score": 1.5}, {"score": -2, "text": "b"}]}"#,
        r#"{"output": [], "meta": {"x": [1, true, null, "s"]}, "input": "caf\u00e9 \ud83d\ude00 日本"}"#,
        r#" {"input":"tab\there","output":[{"text":"q\"\\/\b\f\n\r\t","score":1e2,"model":"m"}]} "#,
    ];
    let expected = vec![
        Some(scored(text("hi"), &[("a", 1.5), ("b", -2.0)])),
        Some(scored(text("café 😀 日本"), &[])),
        Some(scored(
            text("tab\there"),
            &[("q\"\\/\u{8}\u{c}\n\r\t", 100.0)],
        )),
    ];
    for framing in FRAMINGS {
        let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        let (input, _) = frame(&rows, framing);
        let batches = read_all(&input, options(framing, Schema::Scored)).unwrap();
        assert_eq!(scored_rows(&batches), expected, "{framing:?}");
        assert!(problems(&batches).is_empty());
        assert_eq!(
            batches.iter().map(|b| b.bytes).sum::<u64>(),
            input.len() as u64
        );
    }
}

#[test]
fn paired_rows_have_an_optional_margin() {
    let rows = [
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 0.25}"#,
        r#"{"rejected": "r2", "chosen": "c2", "prompt": "p2", "margin": null}"#,
        r#"{"prompt": "p3", "chosen": "", "rejected": "r3", "source": "x"}"#,
    ];
    let paired = |p: &str, c: &str, r: &str, m: Option<f64>| {
        Some(Paired {
            prompt: text(p),
            chosen: text(c),
            rejected: text(r),
            margin: m,
        })
    };
    let expected = vec![
        paired("p", "c", "r", Some(0.25)),
        paired("p2", "c2", "r2", None),
        paired("p3", "", "r3", None),
    ];
    for framing in FRAMINGS {
        let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        let (input, _) = frame(&rows, framing);
        let batches = read_all(&input, options(framing, Schema::Paired)).unwrap();
        assert_eq!(paired_rows(&batches), expected, "{framing:?}");
    }
}

fn chat(messages: &[(&str, &str)]) -> Prompt {
    Prompt::Messages(
        messages
            .iter()
            .map(|(role, content)| (role.to_string(), content.to_string()))
            .collect(),
    )
}

fn read_paired(rows: &[&str], framing: Framing) -> Vec<Option<Paired>> {
    let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let (input, _) = frame(&rows, framing);
    let batches = read_all(&input, options(framing, Schema::Paired)).unwrap();
    assert!(problems(&batches).is_empty(), "{:?}", problems(&batches));
    paired_rows(&batches)
}

#[test]
fn chat_completions_and_implicit_prompts_read_as_conversations() {
    let rows = [
        // TRL's conversational format, the prompt explicit.
        r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
        // TRL's implicit prompt: the shared first messages are the prompt.
        r#"{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "more"}], "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}], "margin": 2}"#,
        // LMFlow's paired_conversation: the system prompt comes first, other members skipped.
        r#"{"rejected": {"conversation_id": "c1", "tools": [], "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}], "system": "be kind"}, "chosen": {"system": "be kind", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]}}"#,
    ];
    let expected = vec![
        Some(Paired {
            prompt: chat(&[("user", "q")]),
            chosen: chat(&[("assistant", "a")]),
            rejected: chat(&[("assistant", "b")]),
            margin: None,
        }),
        Some(Paired {
            prompt: chat(&[("user", "q")]),
            chosen: chat(&[("assistant", "a"), ("user", "more")]),
            rejected: chat(&[("assistant", "b")]),
            margin: Some(2.0),
        }),
        Some(Paired {
            prompt: chat(&[("system", "be kind"), ("user", "hi")]),
            chosen: chat(&[("assistant", "yes")]),
            rejected: chat(&[("assistant", "no")]),
            margin: None,
        }),
    ];
    for framing in FRAMINGS {
        assert_eq!(read_paired(&rows, framing), expected, "{framing:?}");
    }
}

#[test]
fn completion_problems_are_located() {
    let user = r#"{"role": "user", "content": "q"}"#;
    let implicit = |chosen: &str, rejected: &str| {
        format!(r#"{{"chosen": [{user}{chosen}], "rejected": [{user}{rejected}]}}"#)
    };
    let a = r#", {"role": "assistant", "content": "a"}"#;
    // (row, field, where the byte points, message start)
    let cases = [
        (
            r#"{"prompt": "p", "chosen": "c", "rejected": [{"role": "assistant", "content": "r"}]}"#.to_owned(),
            "rejected",
            "[{",
            "expected a string, as chosen is, got chat messages",
        ),
        (
            r#"{"prompt": "p", "chosen": [{"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}]}"#.to_owned(),
            "chosen",
            "[{",
            "chat messages beside a string prompt",
        ),
        (
            r#"{"prompt": "p", "chosen": [{"content": "c"}], "rejected": "r"}"#.to_owned(),
            "chosen[0].role",
            "{\"content",
            "missing; expected a string",
        ),
        (
            r#"{"prompt": "p", "rejected": [{"role": "a", "content": 5}], "chosen": "c"}"#.to_owned(),
            "rejected[0].content",
            "5",
            "expected a string, got 5",
        ),
        (
            r#"{"chosen": [{"role": "user", "content": "x"}], "rejected": [{"role": "user", "content": "y"}]}"#.to_owned(),
            "prompt",
            "{\"chosen",
            "missing, and chosen and rejected share no first message",
        ),
        (implicit("", a), "chosen", "[{", "is all prompt: its 1 messages"),
        (implicit(a, a), "chosen", "[{", "is all prompt: its 2 messages"),
        (
            r#"{"chosen": "c", "rejected": "r"}"#.to_owned(),
            "prompt",
            "{\"chosen",
            "missing; expected the prompt",
        ),
        (
            r#"{"chosen": {"messages": [], "tools": ["t"]}, "rejected": {"messages": []}}"#.to_owned(),
            "chosen.tools",
            "[\"t",
            "tools cannot be carried",
        ),
        (
            r#"{"chosen": {"system": "s"}, "rejected": {"messages": []}}"#.to_owned(),
            "chosen.messages",
            "{\"system",
            "missing; expected a list of chat messages",
        ),
    ];
    for (row, field, at, message) in cases {
        for framing in FRAMINGS {
            let (input, starts) = frame(std::slice::from_ref(&row), framing);
            let p = only_problem(&input, options(framing, Schema::Paired));
            assert_eq!(p.field.as_deref(), Some(field), "{row}");
            assert_eq!(p.byte, (starts[0] + row.find(at).unwrap()) as u64, "{row}");
            assert!(p.message.starts_with(message), "{row}: {}", p.message);
        }
    }
}

#[test]
fn the_first_valid_row_fixes_the_completion_kind() {
    let rows = [
        r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": 1, "rejected": "r"}"#,
        r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r"}"#,
        r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [], "rejected": []}"#,
        r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": "c2", "rejected": "r2"}"#,
    ];
    for framing in FRAMINGS {
        let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        let (input, starts) = frame(&rows, framing);
        let batches = read_all(&input, options(framing, Schema::Paired)).unwrap();
        let problems = problems(&batches);
        let located: Vec<_> = problems
            .iter()
            .map(|p| (p.row, p.field.as_deref(), p.byte))
            .collect();
        let at = starts[2] + rows[2].find("[]").unwrap();
        assert_eq!(
            located,
            [
                (0, Some("chosen"), problems[0].byte),
                (2, Some("chosen"), at as u64)
            ]
        );
        assert_eq!(
            problems[1].message,
            "expected a string, like the rows before, got chat messages"
        );
        assert_eq!(paired_rows(&batches).iter().flatten().count(), 2);
    }
}

#[test]
fn chat_message_prompts_fix_the_prompt_kind_for_later_rows() {
    let rows: Vec<String> = [
        r#"{"input": [1], "output": []}"#,
        r#"{"input": [{"role": "user", "content": "hi"}, {"content": "yo", "role": "assistant"}], "output": []}"#,
        r#"{"input": "a string", "output": []}"#,
        r#"{"input": [{"role": "user", "content": "x", "name": "bob"}], "output": []}"#,
        r#"{"input": [{"role": "user"}], "output": []}"#,
        r#"{"input": [], "output": [{"text": "t", "score": 0}]}"#,
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    for framing in FRAMINGS {
        let (input, starts) = frame(&rows, framing);
        let mut reader = dpov2_json::Reader::new(&input[..], options(framing, Schema::Scored));
        assert!(reader.schema().is_none());
        let batch = reader.next_batch().unwrap().unwrap();
        assert!(reader.schema().is_some());
        assert_eq!(batch.columns.schema(), reader.schema().unwrap());
        let got = scored_rows(std::slice::from_ref(&batch));
        let user = |c: &str| ("user".to_owned(), c.to_owned());
        assert_eq!(
            got,
            vec![
                None,
                Some(scored(
                    Prompt::Messages(vec![user("hi"), ("assistant".into(), "yo".into())]),
                    &[]
                )),
                None,
                None,
                None,
                Some(scored(Prompt::Messages(vec![]), &[("t", 0.0)])),
            ]
        );
        let found: Vec<(u64, Option<&str>, u64)> = batch
            .problems
            .iter()
            .map(|p| (p.row, p.field.as_deref(), p.byte))
            .collect();
        let at =
            |row: usize, pattern: &str| (starts[row] + rows[row].find(pattern).unwrap()) as u64;
        assert_eq!(
            found,
            vec![
                (0, Some("input[0]"), at(0, "1]")),
                (2, Some("input"), at(2, "\"a string")),
                (3, Some("input[0].name"), at(3, "\"name")),
                (4, Some("input[0].content"), at(4, "{\"role")),
            ]
        );
        assert!(batch.problems[1]
            .message
            .contains("chat messages, like the rows before"));
        assert!(batch.problems[3].message.starts_with("missing"));
    }
}

#[test]
fn a_string_prompt_refuses_messages_later() {
    let input = b"{\"input\": \"s\", \"output\": []}\n{\"input\": [], \"output\": []}\n";
    let problem = only_problem(input, options(Framing::Lines, Schema::Scored));
    assert_eq!(
        (problem.row, problem.field.as_deref(), problem.byte),
        (1, Some("input"), 39)
    );
    assert_eq!(
        problem.message,
        "expected a string prompt, like the rows before, got a list of chat messages"
    );
}

#[test]
fn a_batch_before_any_valid_prompt_has_a_null_prompt_column() {
    let input = b"{\"input\": 5, \"output\": []}\n";
    let batches = read_all(input, options(Framing::Lines, Schema::Scored)).unwrap();
    assert_eq!(
        batches[0].columns.column(0).data_type(),
        &arrow_schema::DataType::Null
    );
    assert_eq!(scored_rows_nullable(&batches), 1);
}

/// Rows of a batch whose prompt column is Null-typed: all null.
fn scored_rows_nullable(batches: &[dpov2_json::Batch]) -> usize {
    use arrow_array::Array;
    batches
        .iter()
        .map(|b| b.columns.column(1).null_count())
        .sum()
}

/// (row JSON, field, the text at the offending byte, start of the message) for Scored rows.
const BROKEN_SCORED: &[(&str, Option<&str>, &str, &str)] = &[
    (
        r#"{"input": "p", "output": [{"text": "t", "score": "high"}]}"#,
        Some("output[0].score"),
        r#""high"#,
        r#"expected a number, got "high""#,
    ),
    (
        r#"{"input": "p", "output": [{"text": "t", "score": null}]}"#,
        Some("output[0].score"),
        "null}",
        "null; expected a number",
    ),
    (
        r#"{"input": "p", "output": [{"text": "t", "score": true}]}"#,
        Some("output[0].score"),
        "true",
        "expected a number, got true",
    ),
    (
        r#"{"input": "p"}"#,
        Some("output"),
        r#"{"input"#,
        "missing; expected a list",
    ),
    (
        r#"{"output": []}"#,
        Some("input"),
        r#"{"output"#,
        "missing; expected",
    ),
    (
        r#"{"input": null, "output": []}"#,
        Some("input"),
        "null,",
        "null; expected a string or a list of chat messages",
    ),
    (
        r#"{"input": "p", "output": [{"text": "t"}]}"#,
        Some("output[0].score"),
        r#"{"text"#,
        "missing; expected a number",
    ),
    (
        r#"{"input": "p", "output": [{"text": "a", "score": 1}, {"text": "b", "score": 1, "score": 2}]}"#,
        Some("output[1].score"),
        r#""score": 2"#,
        "a duplicate member name",
    ),
    (
        r#"{"input": "p", "output": [], "in\u0070ut": "q"}"#,
        Some("input"),
        r#""in\u0070ut"#,
        "a duplicate member name",
    ),
    (
        r#"{"input": "p", "output": [], "meta": {"x": 1, "x": 2}}"#,
        Some("meta.x"),
        r#""x": 2"#,
        "a duplicate member name",
    ),
    (
        r#"{"input": "p", "output": [], "meta": [0, {"a": [1e400]}]}"#,
        Some("meta[1].a[0]"),
        "1e400",
        "1e400 is out of the float64 range",
    ),
    (
        r#"{"input": "p", "output": [{"text": "t", "score": -1e309}]}"#,
        Some("output[0].score"),
        "-1e309",
        "-1e309 is out of the float64 range",
    ),
    (
        r#"{"input": "\ud800", "output": []}"#,
        Some("input"),
        r"\ud800",
        "a lone surrogate \\ud800",
    ),
    (
        r#"{"input": "\udc00\ud800", "output": []}"#,
        Some("input"),
        r"\udc00",
        "a lone surrogate \\udc00",
    ),
    (
        r#"{"input": "\x", "output": []}"#,
        Some("input"),
        r"\x",
        "invalid escape \\x",
    ),
    (
        r#"{"input": "\u12", "output": []}"#,
        Some("input"),
        r"\u12",
        "\\u must be followed by four hex digits",
    ),
    (
        "{\"input\": \"a\tb\", \"output\": []}",
        Some("input"),
        "\tb",
        "a raw control character (byte 0x09)",
    ),
    (
        r#"{"input": "p", "output": []} x"#,
        None,
        "x",
        "expected the end of the row after its object, got 'x'",
    ),
    (
        r#"{"input": "p", "output": [],}"#,
        None,
        "}",
        "expected a member name, got '}'",
    ),
    (
        r#"{"input": "p", "output": [{"text": "t", "score": 01}]}"#,
        Some("output[0]"),
        "1}",
        "expected ',' or '}' after a member, got 1",
    ),
    (
        r#"{"input": "p", "output": [{"text": "t", "score": 1.}]}"#,
        Some("output[0].score"),
        "}]",
        "expected a digit",
    ),
    (
        r#"{"input": "p", "output": [{"text": "t", "score": -}]}"#,
        Some("output[0].score"),
        "}]",
        "expected a digit",
    ),
    (
        r#"{"input": "p", "output": {"text": "t"}}"#,
        Some("output"),
        r#"{"text"#,
        "expected a list of responses",
    ),
    (
        r#"{"input": "p", "output": ["t"]}"#,
        Some("output[0]"),
        r#""t""#,
        "expected a response",
    ),
    (
        r#"{"input": "p", "output": [], "flag": tru}"#,
        Some("flag"),
        "tru}",
        "expected a value, got 't'",
    ),
    (
        r#"["input", "output"]"#,
        None,
        r#"["input"#,
        "expected a JSON object, got an array",
    ),
    (
        r#""just a string""#,
        None,
        r#""just"#,
        r#"expected a JSON object, got "just a string""#,
    ),
    (
        r#"{"input" "p", "output": []}"#,
        None,
        r#""p""#,
        "expected ':' after a member name",
    ),
    (
        r#"{"input": "p" "output": []}"#,
        None,
        r#""output"#,
        "expected ',' or '}' after a member",
    ),
];

#[test]
fn every_broken_row_is_a_located_problem_and_the_next_row_reads() {
    let good = r#"{"input": "ok", "output": [{"text": "fine", "score": 0.5}]}"#;
    for framing in FRAMINGS {
        for &(row, field, at, message) in BROKEN_SCORED {
            if framing == Framing::Lmflow && message.starts_with("expected the end of the row") {
                continue; // in LMFlow the instance ends at its brace: a structure error
            }
            let rows = vec![good.to_owned(), row.to_owned(), good.to_owned()];
            let (input, starts) = frame(&rows, framing);
            let batches = read_all(&input, options(framing, Schema::Scored))
                .unwrap_or_else(|e| panic!("{framing:?} {row}: {e}"));
            let got = scored_rows(&batches);
            let fine = Some(scored(text("ok"), &[("fine", 0.5)]));
            assert_eq!(got, vec![fine.clone(), None, fine], "{framing:?} {row}");
            let problems = problems(&batches);
            assert_eq!(problems.len(), 1, "{row}");
            let p = &problems[0];
            let byte = starts[1] + row.find(at).unwrap_or_else(|| panic!("{at} in {row}"));
            assert_eq!(
                (p.row, p.field.as_deref(), p.byte),
                (1, field, byte as u64),
                "{framing:?} {row}: {p}"
            );
            assert!(p.message.starts_with(message), "{row}: {:?}", p.message);
        }
    }
}

#[test]
fn invalid_utf8_is_a_problem_at_its_first_byte_in_any_string() {
    for (row, at) in [
        (&b"{\"input\": \"ab\xffc\", \"output\": []}"[..], 13),
        (b"{\"input\": \"\xc3\", \"output\": []}", 11),
        (b"{\"input\": \"\xed\xa0\x80\", \"output\": []}", 11),
        (b"{\"input\": \"p\", \"output\": [], \"m\xe9\": 1}", 31),
        (
            b"{\"input\": \"p\", \"output\": [{\"text\": \"\xe6\x97\xa5\xe6\x97\", \"score\": 1}]}",
            39,
        ),
    ] {
        for framing in FRAMINGS {
            let (input, starts) = frame(&[String::new()], framing);
            let mut input = input;
            input.splice(starts[0]..starts[0], row.iter().copied());
            let p = only_problem(&input, options(framing, Schema::Scored));
            assert_eq!(p.byte, (starts[0] + at) as u64, "{row:?}");
            assert_eq!(p.message, "invalid UTF-8 in a string");
        }
    }
}

#[test]
fn numbers_are_correctly_rounded_and_huge_ones_refused() {
    let cases = [
        ("9007199254740993", 9007199254740992.0),
        ("0.1", 0.1),
        ("-0", -0.0),
        ("1E+2", 100.0),
        ("2.5e-3", 0.0025),
        ("1e-400", 0.0),
        ("1.7976931348623157e308", f64::MAX),
        (&"1".repeat(300), 1.111_111_111_111_111_1e299),
    ];
    for (number, value) in cases {
        let line =
            format!("{{\"input\": \"p\", \"output\": [{{\"text\": \"t\", \"score\": {number}}}]}}");
        let batches = read_all(line.as_bytes(), options(Framing::Lines, Schema::Scored)).unwrap();
        let rows = scored_rows(&batches);
        let score = rows[0].as_ref().unwrap().output[0].1;
        assert_eq!(score.to_bits(), value.to_bits(), "{number}");
    }
    let digits = "9".repeat(400);
    let line =
        format!("{{\"input\": \"p\", \"output\": [{{\"text\": \"t\", \"score\": {digits}}}]}}");
    let p = only_problem(line.as_bytes(), options(Framing::Lines, Schema::Scored));
    assert!(p.message.ends_with("is out of the float64 range"));
    assert_eq!(p.field.as_deref(), Some("output[0].score"));
}

#[test]
fn paired_problems_name_their_field() {
    let cases = [
        (
            r#"{"prompt": "p", "chosen": "c"}"#,
            "rejected",
            "{",
            "missing; expected a string",
        ),
        (
            r#"{"prompt": "p", "chosen": 1, "rejected": "r"}"#,
            "chosen",
            "1",
            "expected a string, a list of chat messages or a conversation",
        ),
        (
            r#"{"prompt": "p", "chosen": "c", "rejected": "r", "margin": "1"}"#,
            "margin",
            r#""1""#,
            r#"expected a number, got "1""#,
        ),
        (
            r#"{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 1, "margin": 2}"#,
            "margin",
            r#""margin": 2"#,
            "a duplicate member name",
        ),
    ];
    for (row, field, at, message) in cases {
        for framing in FRAMINGS {
            let (input, starts) = frame(&[row.to_owned()], framing);
            let p = only_problem(&input, options(framing, Schema::Paired));
            assert_eq!(p.field.as_deref(), Some(field), "{row}");
            assert_eq!(p.byte, (starts[0] + row.find(at).unwrap()) as u64, "{row}");
            assert!(p.message.starts_with(message), "{row}: {}", p.message);
        }
    }
}

fn nested(depth: usize) -> String {
    format!(
        "{{\"input\": \"p\", \"output\": [], \"meta\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[test]
fn nesting_is_limited_to_128_levels_and_found_instantly() {
    // 127 brackets inside the row's object: 128 levels, accepted; one more is refused.
    for framing in FRAMINGS {
        let batches = read_all(
            &frame(&[nested(127)], framing).0,
            options(framing, Schema::Scored),
        )
        .unwrap();
        assert!(problems(&batches).is_empty());
        for depth in [128, 20_000, 1_000_000] {
            let started = Instant::now();
            let (input, starts) = frame(&[nested(depth)], framing);
            let p = only_problem(&input, options(framing, Schema::Scored));
            assert_eq!(p.message, "nested deeper than 128 levels");
            assert_eq!(p.byte, (starts[0] + 37 + 127) as u64);
            assert!(p.field.as_deref().unwrap().starts_with("meta[0][0]"));
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{depth}: {:?}",
                started.elapsed()
            );
        }
    }
    // Not an object at all: refused at its first byte, however deep.
    let deep = "[".repeat(1_000_000);
    let p = only_problem(deep.as_bytes(), options(Framing::Lines, Schema::Scored));
    assert_eq!((p.byte, p.field), (0, None));
}

#[test]
fn lines_framing_skips_bom_blank_lines_and_accepts_crlf() {
    let row = r#"{"input": "p", "output": []}"#;
    let input = format!("\u{feff}{row}\r\n\r\n   \t\n{row}\r\n\n{row}");
    let batches = read_all(input.as_bytes(), options(Framing::Lines, Schema::Scored)).unwrap();
    assert_eq!(scored_rows(&batches).len(), 3);
    assert!(problems(&batches).is_empty());
    // A BOM anywhere else is no whitespace.
    let input = format!("{row}\n\u{feff}{row}\n");
    let p = only_problem(input.as_bytes(), options(Framing::Lines, Schema::Scored));
    assert_eq!((p.row, p.byte, p.field), (1, row.len() as u64 + 1, None));
    // A truncated last line is a problem of that row.
    let input = format!("{row}\n{{\"input\": \"p\", \"outp");
    let p = only_problem(input.as_bytes(), options(Framing::Lines, Schema::Scored));
    assert_eq!((p.row, p.byte), (1, input.len() as u64));
}

#[test]
fn empty_inputs() {
    for input in [&b""[..], b"\n\n  \n", b"\xEF\xBB\xBF"] {
        assert!(read_all(input, options(Framing::Lines, Schema::Scored))
            .unwrap()
            .is_empty());
    }
    let err = read_all(b"", options(Framing::Lmflow, Schema::Scored)).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Structure {
                byte: 0,
                row: None,
                ..
            }
        ),
        "{err}"
    );
    for input in [
        &br#"{"type": "x", "instances": []}"#[..],
        b"\xEF\xBB\xBF { \"instances\" : [ ] } \n",
    ] {
        let mut reader = dpov2_json::Reader::new(input, options(Framing::Lmflow, Schema::Scored));
        assert!(reader.next_batch().unwrap().is_none());
        assert!(reader.schema().is_none());
    }
}

#[test]
fn lmflow_reads_type_after_the_instances_and_skips_other_members() {
    let input = br#"{"meta": {"a": [1, 2]}, "instances": [{"input": "p",
        "output": [{"text": "multi
line", "score": 1}]}
    ], "type": "text_to_scored_textlist", "z": null}"#;
    let mut reader = dpov2_json::Reader::new(&input[..], options(Framing::Lmflow, Schema::Scored));
    let batch = reader.next_batch().unwrap().unwrap();
    // The raw newline inside a string is a problem of the row, not of the framing.
    assert_eq!(batch.problems.len(), 1);
    assert_eq!(batch.problems[0].field.as_deref(), Some("output[0].text"));
    assert!(reader.next_batch().unwrap().is_none());
    assert_eq!(reader.dataset_type(), Some("text_to_scored_textlist"));
}

#[test]
fn lmflow_structure_faults_are_fatal_errors_with_their_byte() {
    let row = r#"{"input": "p", "output": []}"#;
    let cases: Vec<(String, u64, Option<u64>, &str)> = vec![
        ("[]".into(), 0, None, "expected an LMFlow object"),
        (
            r#"{"type": "x"}"#.into(),
            12,
            None,
            "the LMFlow object has no \"instances\" member",
        ),
        (
            r#"{"instances": {}}"#.into(),
            14,
            None,
            "\"instances\" must be an array",
        ),
        (
            format!(r#"{{"instances": [], "instances": [{row}]}}"#),
            18,
            None,
            "a second \"instances\" member",
        ),
        (
            r#"{"type": 1, "instances": []}"#.into(),
            9,
            None,
            "\"type\" must be a string",
        ),
        (
            r#"{"type": "a", "type": "b", "instances": []}"#.into(),
            14,
            None,
            "a second \"type\"",
        ),
        (
            r#"{"instances": [], "x": [1,]}"#.into(),
            26,
            None,
            "expected a value",
        ),
        (
            r#"{"instances": []} x"#.into(),
            18,
            None,
            "data after the LMFlow object's closing brace",
        ),
        (
            r#"{"instances": [], }"#.into(),
            18,
            None,
            "expected a member name",
        ),
        (
            format!(r#"{{"instances": [{row}, {row}"#),
            73,
            Some(2),
            "the input ends inside the instances array",
        ),
        (
            format!(r#"{{"instances": [{row}, {{"input": "p", "output": ["#),
            45,
            Some(1),
            "the instance starting here never ends",
        ),
        (
            format!(r#"{{"instances": [{row} {row}]}}"#),
            44,
            Some(1),
            "expected ',' or ']' after an instance",
        ),
        (
            format!(r#"{{"instances": [{row},]}}"#),
            44,
            Some(1),
            "expected an instance after ','",
        ),
        (
            format!(r#"{{"instances": [{row}]"#),
            44,
            None,
            "the input ends inside the LMFlow object",
        ),
        (
            format!(r#"{{"instances": [{}]}}"#, "[".repeat(1_000_000)),
            15,
            Some(0),
            "the instance starting here never ends",
        ),
    ];
    for (input, byte, row, message) in cases {
        let mut reader =
            dpov2_json::Reader::new(input.as_bytes(), options(Framing::Lmflow, Schema::Scored));
        let err = loop {
            match reader.next_batch() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error for {input:.80}"),
                Err(err) => break err,
            }
        };
        match &err {
            ReadError::Structure {
                byte: b,
                row: r,
                message: m,
            } => {
                assert_eq!((*b, *r), (byte, row), "{input:.80}: {err}");
                assert!(m.starts_with(message), "{input:.80}: {m}");
            }
            other => panic!("{other}"),
        }
        // After a fatal error the reader is done.
        assert!(reader.next_batch().unwrap().is_none());
    }
}

#[test]
fn batches_respect_their_limits() {
    let row = r#"{"input": "p", "output": [{"text": "0123456789", "score": 1}]}"#;
    let rows: Vec<String> = (0..50).map(|_| row.to_owned()).collect();
    for framing in FRAMINGS {
        let (input, starts) = frame(&rows, framing);
        // What follows the last row (LMFlow's closing) goes to the last batch.
        let trailer = input.len() - starts[49] - row.len();
        for (max_rows, max_bytes) in [(7, 1 << 20), (1000, 300), (3, 150), (1000, 1)] {
            let mut options = options(framing, Schema::Scored);
            options.max_rows = max_rows;
            options.max_bytes = max_bytes;
            let batches = read_all(&input, options).unwrap();
            let mut next = 0;
            for batch in &batches {
                let n = batch.columns.num_rows();
                assert_eq!(batch.first_row, next);
                assert!(n >= 1 && n <= max_rows);
                next += n as u64;
                let last = if next == 50 { trailer } else { 0 };
                assert!(
                    n == 1 || batch.bytes as usize - last <= max_bytes,
                    "{n} rows, {} bytes",
                    batch.bytes
                );
            }
            assert_eq!(next, 50);
            assert_eq!(
                batches.iter().map(|b| b.bytes).sum::<u64>(),
                input.len() as u64
            );
        }
    }
}

#[test]
fn messages_say_what_without_where() {
    let p = only_problem(
        br#"{"input": "p", "output": [{"text": "t", "score": "high"}]}"#,
        options(Framing::Lines, Schema::Scored),
    );
    assert_eq!(p.message, r#"expected a number, got "high""#);
    assert_eq!(
        p.to_string(),
        r#"row 0, output[0].score (byte 49): expected a number, got "high""#
    );
}

/// The batches of `rows` (JSON Lines) read with the given extras, at most `max_rows` a batch.
fn read_extras(rows: &[&str], extras: &[(&str, ExtraKind)], max_rows: usize) -> Vec<Batch> {
    let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let (input, _) = frame(&rows, Framing::Lines);
    let extras = extras
        .iter()
        .map(|&(name, kind)| Extra {
            name: name.to_owned(),
            kind,
        })
        .collect();
    let mut options = options(Framing::Lines, Schema::Paired);
    options.max_rows = max_rows;
    let mut reader = Reader::new(&input[..], options)
        .with_extras(extras)
        .unwrap();
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch().unwrap() {
        batches.push(batch);
    }
    batches
}

#[test]
fn extras_of_the_first_valid_row_become_typed_columns() {
    use arrow_array::{Array, Float64Array, Int64Array, StringArray};
    let extras = [
        ("score", ExtraKind::Float64),
        ("index", ExtraKind::Int64),
        ("tag", ExtraKind::Utf8),
        ("unused", ExtraKind::Float64),
    ];
    let rows = [
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "margin": "bad", "unused": 1}"#,
        r#"{"index": -9223372036854775808, "prompt": "p", "chosen": "c", "rejected": "r", "tag": null, "score": 1e2}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "tag": "t\u00e9", "unused": null}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "unused": 2.5}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": 1.0}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": 9223372036854775808}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "score": true}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "tag": 1, "index": 7}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": 7, "score": -0.5}"#,
    ];
    for max_rows in [1, 3, 100] {
        let batches = read_extras(&rows, &extras, max_rows);
        let fields: Vec<(u64, String, String)> = problems(&batches)
            .into_iter()
            .map(|p| (p.row, p.field.unwrap_or_default(), p.message))
            .collect();
        let expected_fields = [
            (0, "margin"),
            (3, "unused"),
            (4, "index"),
            (5, "index"),
            (6, "score"),
            (7, "tag"),
        ];
        let got: Vec<(u64, &str)> = fields.iter().map(|(r, f, _)| (*r, f.as_str())).collect();
        assert_eq!(got, expected_fields, "max_rows {max_rows}");
        assert!(fields[1].2.contains("the first row lacks this member"));
        assert!(fields[2].2.contains("int64"), "{}", fields[2].2);
        // Every batch after the first valid row has the columns of the extras it had.
        let mut scores = Vec::new();
        let mut indices = Vec::new();
        let mut tags = Vec::new();
        for batch in batches
            .iter()
            .filter(|b| b.first_row + b.columns.num_rows() as u64 > 1)
        {
            let schema = batch.columns.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(
                names,
                ["prompt", "chosen", "rejected", "margin", "score", "index", "tag"]
            );
            let column = |name: &str| batch.columns.column_by_name(name).unwrap().clone();
            let score = column("score");
            let score = score.as_any().downcast_ref::<Float64Array>().unwrap();
            let index = column("index");
            let index = index.as_any().downcast_ref::<Int64Array>().unwrap();
            let tag = column("tag");
            let tag = tag.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.columns.num_rows() {
                if batch.first_row + (i as u64) < 1 {
                    continue;
                }
                scores.push(score.is_valid(i).then(|| score.value(i)));
                indices.push(index.is_valid(i).then(|| index.value(i)));
                tags.push(tag.is_valid(i).then(|| tag.value(i).to_owned()));
            }
        }
        assert_eq!(
            scores,
            [Some(100.0), None, None, None, None, None, None, Some(-0.5)]
        );
        assert_eq!(
            indices,
            [Some(i64::MIN), None, None, None, None, None, None, Some(7)]
        );
        let tags: Vec<Option<&str>> = tags.iter().map(|t| t.as_deref()).collect();
        assert_eq!(tags, [None, Some("té"), None, None, None, None, None, None]);
    }
}

#[test]
fn extras_must_be_distinct_and_not_the_rows_own_members() {
    let extra = |name: &str| Extra {
        name: name.to_owned(),
        kind: ExtraKind::Float64,
    };
    let reader = || Reader::new(&b""[..], options(Framing::Lines, Schema::Paired));
    assert!(reader().with_extras(vec![extra("a"), extra("a")]).is_err());
    assert!(reader().with_extras(vec![extra("margin")]).is_err());
    let many = (0..=MAX_EXTRAS).map(|k| extra(&format!("x{k}"))).collect();
    assert!(reader().with_extras(many).is_err());
    assert!(reader().with_extras(vec![extra("a"), extra("b")]).is_ok());
}

#[test]
fn an_integer_extra_says_what_it_got() {
    let rows = [
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": 1}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": "7"}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": 1.0}"#,
        r#"{"prompt": "p", "chosen": "c", "rejected": "r", "index": -9223372036854775809}"#,
    ];
    let batches = read_extras(&rows, &[("index", ExtraKind::Int64)], 100);
    let messages: Vec<String> = problems(&batches).into_iter().map(|p| p.message).collect();
    assert_eq!(
        messages,
        [
            "expected an integer, got \"7\"",
            "expected an integer in the int64 range, got 1.0",
            "expected an integer in the int64 range, got -9223372036854775809",
        ]
    );
}
