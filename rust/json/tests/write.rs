use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, DictionaryArray, FixedSizeListArray, Float16Array,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, LargeListArray,
    LargeStringArray, ListArray, NullArray, RecordBatch, StringArray, StructArray, UInt16Array,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow_buffer::{Buffer, OffsetBuffer};
use arrow_schema::{DataType, Field};
use dpov2_json::{check_rows, write_rows, JsonWriter, Layout, WriteError, WriteProblem};
use proptest::prelude::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn lines(batch: &RecordBatch) -> String {
    let mut out = Vec::new();
    write_rows(batch, &mut out, Layout::Lines).unwrap();
    String::from_utf8(out).unwrap()
}

fn error(batch: &RecordBatch) -> WriteError {
    write_rows(batch, &mut Vec::new(), Layout::Lines).unwrap_err()
}

fn messages() -> StructArray {
    let role = Arc::new(StringArray::from(vec!["user", "assistant", "user"])) as ArrayRef;
    let content = Arc::new(StringArray::from(vec![Some("hi"), None, Some("é")])) as ArrayRef;
    StructArray::from(vec![
        (Arc::new(Field::new("role", DataType::Utf8, false)), role),
        (
            Arc::new(Field::new("content", DataType::Utf8, true)),
            content,
        ),
    ])
}

#[test]
fn every_supported_type_is_written_as_its_json() {
    let half = F16::from_f32;
    let b = batch(vec![
        ("i8", Arc::new(Int8Array::from(vec![-128, 127])) as ArrayRef),
        ("i16", Arc::new(Int16Array::from(vec![-32768, 1]))),
        ("i32", Arc::new(Int32Array::from(vec![i32::MIN, 2]))),
        ("i64", Arc::new(Int64Array::from(vec![i64::MIN, i64::MAX]))),
        ("u8", Arc::new(UInt8Array::from(vec![0, 255]))),
        ("u16", Arc::new(UInt16Array::from(vec![0, 65535]))),
        ("u32", Arc::new(UInt32Array::from(vec![0, u32::MAX]))),
        ("u64", Arc::new(UInt64Array::from(vec![0, u64::MAX]))),
        (
            "f16",
            Arc::new(Float16Array::from(vec![half(1.5), half(-0.0)])),
        ),
        ("f32", Arc::new(Float32Array::from(vec![0.1f32, 2.0]))),
        ("f64", Arc::new(Float64Array::from(vec![2.0, 1e300]))),
        ("b", Arc::new(BooleanArray::from(vec![true, false]))),
        ("n", Arc::new(NullArray::new(2))),
        ("s", Arc::new(StringArray::from(vec!["a", "日"]))),
        ("ls", Arc::new(LargeStringArray::from(vec!["", "x"]))),
    ]);
    assert_eq!(
        lines(&b),
        concat!(
            r#"{"i8": -128, "i16": -32768, "i32": -2147483648, "i64": -9223372036854775808, "#,
            r#""u8": 0, "u16": 0, "u32": 0, "u64": 0, "f16": 1.5, "f32": 0.10000000149011612, "#,
            r#""f64": 2.0, "b": true, "n": null, "s": "a", "ls": ""}"#,
            "\n",
            r#"{"i8": 127, "i16": 1, "i32": 2, "i64": 9223372036854775807, "u8": 255, "#,
            r#""u16": 65535, "u32": 4294967295, "u64": 18446744073709551615, "f16": -0.0, "#,
            r#""f32": 2.0, "f64": 1e300, "b": false, "n": null, "s": "日", "ls": "x"}"#,
            "\n",
        )
    );
}

type F16 = <arrow_array::types::Float16Type as arrow_array::ArrowPrimitiveType>::Native;

#[test]
fn nested_lists_structs_and_dictionaries_are_written_as_they_hold() {
    let mut texts = ListBuilder::new(StringBuilder::new());
    texts.append_value([Some("a"), None]);
    texts.append_null();
    texts.append_value(Vec::<Option<&str>>::new());
    let chat = ListArray::new(
        Arc::new(Field::new("item", messages().data_type().clone(), true)),
        OffsetBuffer::new(vec![0, 2, 2, 3].into()),
        Arc::new(messages()),
        None,
    );
    let large = LargeListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        OffsetBuffer::new(vec![0i64, 1, 1, 3].into()),
        Arc::new(Float64Array::from(vec![Some(0.5), None, Some(-3.0)])),
        None,
    );
    let fixed = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Int32, false)),
        2,
        Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5, 6])),
        None,
    );
    let dict: DictionaryArray<Int32Type> = vec![Some("chosen"), None, Some("chosen")]
        .into_iter()
        .collect();
    let b = batch(vec![
        ("texts", Arc::new(texts.finish()) as ArrayRef),
        ("chat", Arc::new(chat)),
        ("scores", Arc::new(large)),
        ("pair", Arc::new(fixed)),
        ("kind", Arc::new(dict)),
    ]);
    let expected = [
        r#"{"texts": ["a", null], "chat": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}], "scores": [0.5], "pair": [1, 2], "kind": "chosen"}"#,
        r#"{"texts": null, "chat": [], "scores": [], "pair": [3, 4], "kind": null}"#,
        r#"{"texts": [], "chat": [{"role": "user", "content": "é"}], "scores": [null, -3.0], "pair": [5, 6], "kind": "chosen"}"#,
    ];
    assert_eq!(lines(&b), expected.map(|l| format!("{l}\n")).concat());
    // A slice starts inside every buffer; its rows are written the same.
    assert_eq!(
        lines(&b.slice(1, 2)),
        expected[1..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
}

#[test]
fn null_structs_and_structs_without_fields() {
    let nulls = arrow_buffer::NullBuffer::from(vec![true, false, true]);
    let (fields, columns, _) = messages().into_parts();
    let with_nulls = StructArray::new(fields, columns, Some(nulls));
    let empty = StructArray::new_empty_fields(3, None);
    let b = batch(vec![
        ("m", Arc::new(with_nulls) as ArrayRef),
        ("e", Arc::new(empty)),
    ]);
    assert_eq!(
        lines(&b),
        "{\"m\": {\"role\": \"user\", \"content\": \"hi\"}, \"e\": {}}\n\
         {\"m\": null, \"e\": {}}\n\
         {\"m\": {\"role\": \"user\", \"content\": \"é\"}, \"e\": {}}\n"
    );
}

#[test]
fn every_control_character_quote_and_backslash_is_escaped_and_nothing_else() {
    let all: String = (0u8..0x20)
        .map(char::from)
        .chain(['"', '\\', '/', 'é', '😀', '\u{7f}'])
        .collect();
    let b = batch(vec![(
        "t\n\"",
        Arc::new(StringArray::from(vec![all.as_str()])) as ArrayRef,
    )]);
    let expected = concat!(
        r#"{"t\n\"": ""#,
        r#"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
        r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c"#,
        r#"\u001d\u001e\u001f\"\\/é😀"#,
        "\u{7f}\"}\n"
    );
    assert_eq!(lines(&b), expected);
}

#[test]
fn a_non_finite_float_is_refused_naming_its_row_and_column() {
    let margin = Float64Array::from(vec![Some(0.5), None, Some(f64::INFINITY)]);
    let err = error(&batch(vec![("margin", Arc::new(margin) as ArrayRef)]));
    assert_eq!(
        err,
        WriteError {
            row: Some(2),
            column: "margin".into(),
            problem: WriteProblem::NonFinite(f64::INFINITY)
        }
    );
    assert_eq!(
        err.to_string(),
        "row 2, column 'margin': inf is not a finite number; non-finite numbers are not written"
    );
    // NaN under a null is never written, so it is no error.
    let masked = Float32Array::new(vec![1.0, f32::NAN].into(), Some(vec![true, false].into()));
    assert_eq!(
        lines(&batch(vec![("x", Arc::new(masked) as ArrayRef)])),
        "{\"x\": 1.0}\n{\"x\": null}\n"
    );
}

#[test]
fn the_path_of_a_nested_fault_reaches_the_value() {
    let scores = Float64Array::from(vec![1.0, 2.0, 3.0, f64::NAN]);
    let outputs = StructArray::from(vec![(
        Arc::new(Field::new("score", DataType::Float64, false)),
        Arc::new(scores) as ArrayRef,
    )]);
    let list = ListArray::new(
        Arc::new(Field::new("item", outputs.data_type().clone(), false)),
        OffsetBuffer::new(vec![0, 1, 4].into()),
        Arc::new(outputs),
        None,
    );
    let err = error(&batch(vec![("output", Arc::new(list) as ArrayRef)]));
    assert_eq!((err.row, err.column.as_str()), (Some(1), "output[2].score"));
    assert!(matches!(err.problem, WriteProblem::NonFinite(v) if v.is_nan()));
}

#[test]
fn invalid_utf8_is_refused_naming_the_byte() {
    let offsets = OffsetBuffer::new(vec![0, 2, 7].into());
    // SAFETY (of the test): the offsets fit; the bytes are deliberately not UTF-8, as a
    // Parquet file may hold them.
    let strings =
        unsafe { StringArray::new_unchecked(offsets, Buffer::from(b"okab\"\xffz".to_vec()), None) };
    let err = error(&batch(vec![("prompt", Arc::new(strings) as ArrayRef)]));
    assert_eq!(
        err,
        WriteError {
            row: Some(1),
            column: "prompt".into(),
            problem: WriteProblem::InvalidUtf8 { byte: 3 }
        }
    );
    assert_eq!(
        check_rows(&batch(vec![("p", err_strings())]))
            .unwrap_err()
            .row,
        Some(0)
    );
}

fn err_strings() -> ArrayRef {
    // SAFETY: as above; a truncated two-byte character.
    Arc::new(unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new(vec![0, 2].into()),
            Buffer::from(vec![b'a', 0xc3]),
            None,
        )
    })
}

#[test]
fn an_unsupported_type_is_refused_by_the_writer_and_passed_over_by_the_check() {
    let binary = BinaryArray::from(vec![&b"\xff"[..]]);
    let b = batch(vec![
        ("ok", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
        ("raw", Arc::new(binary)),
    ]);
    let err = error(&b);
    assert_eq!((err.row, err.column.as_str()), (None, "raw"));
    assert_eq!(err.problem, WriteProblem::Unsupported(DataType::Binary));
    assert!(err
        .to_string()
        .starts_with("column 'raw': Arrow type Binary has no JSON form"));
    check_rows(&b).unwrap();
    let nested = ListArray::new(
        Arc::new(Field::new("item", DataType::Binary, true)),
        OffsetBuffer::new(vec![0, 0].into()),
        Arc::new(BinaryArray::from(Vec::<&[u8]>::new())),
        None,
    );
    assert_eq!(
        error(&batch(vec![("l", Arc::new(nested) as ArrayRef)])).column,
        "l[]"
    );
}

#[test]
fn a_failed_write_leaves_the_output_as_it_was() {
    let b = batch(vec![(
        "x",
        Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as ArrayRef,
    )]);
    let mut out = b"before".to_vec();
    assert!(write_rows(&b, &mut out, Layout::Lines).is_err());
    assert_eq!(out, b"before");
}

fn numbers(values: std::ops::Range<i64>) -> RecordBatch {
    batch(vec![(
        "n",
        Arc::new(Int64Array::from_iter_values(values)) as ArrayRef,
    )])
}

#[test]
fn lmflow_json_spans_batches_and_counts_rows_from_the_first() {
    let mut writer = JsonWriter::lmflow("paired \"text\"");
    let mut out = Vec::new();
    writer.write(&numbers(0..2), &mut out).unwrap();
    writer.write(&numbers(0..0), &mut out).unwrap();
    writer.write(&numbers(2..3), &mut out).unwrap();
    let bad = batch(vec![(
        "n",
        Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as ArrayRef,
    )]);
    let before = out.clone();
    assert_eq!(writer.write(&bad, &mut out).unwrap_err().row, Some(4));
    assert_eq!(out, before);
    assert_eq!(writer.rows(), 3);
    writer.finish(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"type\": \"paired \\\"text\\\"\", \"instances\": [\n{\"n\": 0},\n{\"n\": 1},\n{\"n\": 2}\n]}\n"
    );

    let mut empty = Vec::new();
    JsonWriter::lmflow("t").finish(&mut empty);
    let parsed: serde_json::Value = serde_json::from_slice(&empty).unwrap();
    assert_eq!(parsed, serde_json::json!({"type": "t", "instances": []}));
}

#[test]
fn json_lines_count_rows_across_batches() {
    let mut writer = JsonWriter::json_lines();
    let mut out = Vec::new();
    writer.write(&numbers(0..2), &mut out).unwrap();
    let bad = batch(vec![(
        "n",
        Arc::new(Float64Array::from(vec![f64::NEG_INFINITY])) as ArrayRef,
    )]);
    assert_eq!(writer.write(&bad, &mut out).unwrap_err().row, Some(2));
    writer.finish(&mut out);
    assert_eq!(out, b"{\"n\": 0}\n{\"n\": 1}\n");
}

#[test]
fn parallel_pieces_are_concatenated_in_order_and_the_first_fault_is_reported() {
    let rows = 50_000;
    let text: Vec<String> = (0..rows).map(|i| format!("row {i} \"q\"")).collect();
    let mut values: Vec<f64> = (0..rows).map(|i| i as f64 / 3.0).collect();
    let b = batch(vec![
        ("t", Arc::new(StringArray::from(text)) as ArrayRef),
        ("v", Arc::new(Float64Array::from(values.clone()))),
    ]);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(|| lines(&b));
    let four = pool(4).install(|| lines(&b));
    assert_eq!(one, four);
    assert_eq!(
        one.lines().nth(12_345).unwrap(),
        r#"{"t": "row 12345 \"q\"", "v": 4115.0}"#
    );

    values[40_000] = f64::NAN;
    values[30_001] = f64::INFINITY;
    let bad = batch(vec![(
        "v",
        Arc::new(Float64Array::from(values)) as ArrayRef,
    )]);
    assert_eq!(pool(4).install(|| error(&bad)).row, Some(30_001));
    assert_eq!(
        pool(4).install(|| check_rows(&bad)).unwrap_err().row,
        Some(30_001)
    );
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
    fn strings_are_escaped_by_the_rules_and_read_back_equal(texts in prop::collection::vec("(?s).{0,40}", 1..8)) {
        let b = batch(vec![("s", Arc::new(StringArray::from(texts.clone())) as ArrayRef)]);
        let written = lines(&b);
        for (line, text) in written.lines().zip(&texts) {
            prop_assert_eq!(line, format!("{{\"s\": {}}}", reference(text)));
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
            prop_assert_eq!(parsed["s"].as_str(), Some(text.as_str()));
        }
    }

    #[test]
    fn every_finite_float_reads_back_exactly_as_a_float(bits in any::<u64>()) {
        let value = f64::from_bits(bits);
        let b = batch(vec![("x", Arc::new(Float64Array::from(vec![value])) as ArrayRef)]);
        let mut out = Vec::new();
        let written = write_rows(&b, &mut out, Layout::Lines);
        if value.is_finite() {
            prop_assert!(written.is_ok());
            let text = std::str::from_utf8(&out).unwrap();
            let number = &text["{\"x\": ".len()..text.len() - 2];
            prop_assert!(number.contains(['.', 'e']), "{} reads back as an integer", number);
            prop_assert!(number.len() <= 24, "{} is not short", number);
            prop_assert_eq!(number.parse::<f64>().unwrap().to_bits(), bits);
        } else {
            prop_assert!(matches!(written.unwrap_err().problem, WriteProblem::NonFinite(_)));
        }
    }
}
