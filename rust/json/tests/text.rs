use dpov2_json::{quote_strings, OffsetsError};
use proptest::prelude::*;

fn quote(texts: &[&str]) -> Vec<String> {
    let data: Vec<u8> = texts.concat().into_bytes();
    let mut offsets = vec![0i64];
    for t in texts {
        offsets.push(offsets.last().unwrap() + t.len() as i64);
    }
    let (out_offsets, out) = quote_strings(&offsets, &data).unwrap();
    out_offsets
        .windows(2)
        .map(|w| String::from_utf8(out[w[0] as usize..w[1] as usize].to_vec()).unwrap())
        .collect()
}

#[test]
fn escapes_what_json_requires_and_nothing_else() {
    assert_eq!(
        quote(&[
            "a\"b\\c",
            "line\nbreak\ttab\r",
            "\u{8}\u{c}\u{1}\u{1f}",
            "é日😀/",
            ""
        ]),
        vec![
            r#""a\"b\\c""#,
            r#""line\nbreak\ttab\r""#,
            r#""\b\f\u0001\u001f""#,
            "\"é日😀/\"",
            "\"\"",
        ]
    );
}

#[test]
fn offsets_may_start_inside_the_data_as_in_a_sliced_arrow_array() {
    let (offsets, out) = quote_strings(&[2, 4], b"xxab").unwrap();
    assert_eq!((offsets, out), (vec![0, 4], b"\"ab\"".to_vec()));
    assert_eq!(quote_strings(&[], b"").unwrap(), (vec![0], vec![]));
}

#[test]
fn bad_offsets_are_refused() {
    let err = quote_strings(&[0, 3, 2], b"abc").unwrap_err();
    assert_eq!(
        err,
        OffsetsError {
            index: 2,
            offset: 2,
            data_len: 3
        }
    );
    assert!(quote_strings(&[0, 4], b"abc").is_err());
    assert!(quote_strings(&[-1, 2], b"abc").is_err());
}

/// The escaping rules, one character at a time.
fn reference(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #[test]
    fn matches_the_one_character_at_a_time_rules(texts in prop::collection::vec("(?s).{0,30}", 0..8)) {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let expected: Vec<String> = texts.iter().map(|t| reference(t)).collect();
        prop_assert_eq!(quote(&refs), expected);
    }
}
