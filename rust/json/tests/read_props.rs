//! Properties of the reader on random inputs: a round trip through a simple JSON writer, and
//! results that do not depend on batch limits, read sizes or threads.

mod read_support;

use dpov2_json::{Framing, Problem, Schema};
use proptest::prelude::*;
use read_support::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z \"\\\\/\n\t\u{1}\u{1f}\u{7f}\u{e9}\u{65e5}\u{1f600}]{0,30}",
        // Long enough that inputs pass the size from which batches are parsed in parallel.
        (0usize..3000, "[a-zé日]").prop_map(|(n, c)| c.repeat(n)),
    ]
}

fn any_prompt(messages: bool) -> BoxedStrategy<Prompt> {
    if messages {
        prop::collection::vec((any_text(), any_text()), 0..3)
            .prop_map(Prompt::Messages)
            .boxed()
    } else {
        any_text().prop_map(Prompt::Text).boxed()
    }
}

fn any_score() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |s| s.is_finite()),
        (-1000i32..1000).prop_map(f64::from),
    ]
}

fn any_scored(messages: bool) -> impl Strategy<Value = Scored> {
    (
        any_prompt(messages),
        prop::collection::vec((any_text(), any_score()), 0..4),
    )
        .prop_map(|(input, output)| Scored { input, output })
}

/// A paired row: a chat prompt with string completions (LMFlow's) or chat completions
/// (TRL's conversational format), or text throughout.
fn any_paired(messages: bool, chat_completions: bool) -> impl Strategy<Value = Paired> {
    let completions = messages && chat_completions;
    (
        any_prompt(messages),
        any_prompt(completions),
        any_prompt(completions),
        prop::option::of(any_score()),
    )
        .prop_map(|(prompt, chosen, rejected, margin)| Paired {
            prompt,
            chosen,
            rejected,
            margin,
        })
}

/// Rows that are problems in both framings, wherever they stand (a prompt of the other kind
/// would be valid as the first valid row: the kind rule has its own tests).
const BROKEN: &[&str] = &[
    r#"{"input": "p", "output": [{"text": "t", "score": "high"}]}"#,
    r#"{"input": "p", "output": [{"text": "t", "score": 1, "score": 2}]}"#,
    r#"{"input": [{"role": "user", "content": "c", "name": "n"}], "output": []}"#,
    r#"{"input": "\ud800", "output": []}"#,
    r#"{"input": "p", "output": [], "x": 1e999}"#,
    r#"[1, 2, 3]"#,
    r#"{"input": "p", "output": [{"text": "t", "score": 1}],}"#,
];

/// A scored file mixing valid rows and broken ones (`None`: the broken row `k`).
fn any_mixed() -> impl Strategy<Value = Vec<Result<Scored, usize>>> {
    prop::collection::vec(
        prop_oneof![
            4 => any_scored(false).prop_map(Ok),
            1 => (0..BROKEN.len()).prop_map(Err),
        ],
        0..60,
    )
}

fn any_framing() -> impl Strategy<Value = Framing> {
    prop_oneof![Just(Framing::Lines), Just(Framing::Lmflow)]
}

/// Everything a whole read yields, batch boundaries aside.
fn read_everything(
    input: &[u8],
    framing: Framing,
    max_rows: usize,
    max_bytes: usize,
    sizes: Vec<usize>,
    threads: usize,
) -> (Vec<Option<Scored>>, Vec<Problem>, u64) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut options = options(framing, Schema::Scored);
    options.max_rows = max_rows;
    options.max_bytes = max_bytes;
    let reader = Chunky {
        data: input,
        sizes,
        next: 0,
    };
    let batches = pool.install(|| read_from(reader, options)).unwrap();
    for batch in &batches {
        assert!(batch.columns.num_rows() <= max_rows);
    }
    let bytes = batches.iter().map(|b| b.bytes).sum();
    (scored_rows(&batches), problems(&batches), bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn scored_rows_round_trip(
        messages in any::<bool>(),
        rows in prop::collection::vec(any_scored(false), 0..20),
        chat in prop::collection::vec(any_scored(true), 0..20),
        escape_all in any::<bool>(),
        framing in any_framing(),
    ) {
        let rows = if messages { chat } else { rows };
        let json: Vec<String> = rows.iter().map(|r| scored_json(r, escape_all)).collect();
        let (input, _) = frame(&json, framing);
        let batches = read_all(&input, options(framing, Schema::Scored)).unwrap();
        prop_assert!(problems(&batches).is_empty(), "{:?}", problems(&batches));
        let expected: Vec<Option<Scored>> = rows.into_iter().map(Some).collect();
        prop_assert_eq!(scored_rows(&batches), expected);
    }

    #[test]
    fn paired_rows_round_trip(
        chat_completions in any::<bool>(),
        rows in prop::collection::vec(any_paired(true, true), 0..20),
        legacy in prop::collection::vec(any_paired(true, false), 0..20),
        escape_all in any::<bool>(),
        framing in any_framing(),
    ) {
        let rows = if chat_completions { rows } else { legacy };
        let json: Vec<String> = rows.iter().map(|r| paired_json(r, escape_all)).collect();
        let (input, _) = frame(&json, framing);
        let batches = read_all(&input, options(framing, Schema::Paired)).unwrap();
        prop_assert!(problems(&batches).is_empty(), "{:?}", problems(&batches));
        let expected: Vec<Option<Paired>> = rows.into_iter().map(Some).collect();
        prop_assert_eq!(paired_rows(&batches), expected);
    }

    #[test]
    fn results_do_not_depend_on_limits_read_sizes_or_threads(
        rows in any_mixed(),
        framing in any_framing(),
        max_rows in 1usize..20,
        // Small batches, and ones large enough to be parsed in parallel pieces.
        max_bytes in prop_oneof![1usize..20_000, 100_000usize..1_000_000],
        sizes in prop::collection::vec(1usize..5000, 1..5),
        threads in 1usize..4,
    ) {
        let json: Vec<String> = rows
            .iter()
            .map(|r| match r {
                Ok(row) => scored_json(row, false),
                Err(k) => BROKEN[*k].to_owned(),
            })
            .collect();
        let (input, _) = frame(&json, framing);
        let whole = read_everything(&input, framing, usize::MAX, usize::MAX, vec![usize::MAX], 1);
        let expected: Vec<Option<Scored>> = rows.iter().map(|r| r.clone().ok()).collect();
        prop_assert_eq!(&whole.0, &expected);
        let broken: Vec<u64> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.is_err().then_some(i as u64))
            .collect();
        prop_assert_eq!(whole.1.iter().map(|p| p.row).collect::<Vec<_>>(), broken);
        // With no rows there is no batch to count the bytes in.
        prop_assert_eq!(whole.2, if rows.is_empty() { 0 } else { input.len() as u64 });
        let cut = read_everything(&input, framing, max_rows, max_bytes, sizes, threads);
        prop_assert_eq!(cut, whole);
    }
}

#[test]
fn parallel_pieces_keep_rows_and_problems_in_place() {
    // 400 rows of about 1 kB, every seventh broken: batches of 256 kB are cut into pieces.
    let rows: Vec<Result<Scored, usize>> = (0..400)
        .map(|i| {
            if i % 7 == 3 {
                Err(i % BROKEN.len())
            } else {
                Ok(Scored {
                    input: Prompt::Text(format!("prompt {i} {}", "é".repeat(i % 50))),
                    output: vec![(format!("{i}").repeat(300), i as f64 / 4.0)],
                })
            }
        })
        .collect();
    let json: Vec<String> = rows
        .iter()
        .map(|r| match r {
            Ok(row) => scored_json(row, false),
            Err(k) => BROKEN[*k].to_owned(),
        })
        .collect();
    for framing in [Framing::Lines, Framing::Lmflow] {
        let (input, _) = frame(&json, framing);
        let expected: Vec<Option<Scored>> = rows.iter().map(|r| r.clone().ok()).collect();
        for threads in [1, 2, 3] {
            let (got, problems, bytes) =
                read_everything(&input, framing, 1000, 256 << 10, vec![100_000], threads);
            assert_eq!(got, expected, "{threads} threads");
            let rows: Vec<u64> = problems.iter().map(|p| p.row).collect();
            let broken: Vec<u64> = (0..400).filter(|i| i % 7 == 3).collect();
            assert_eq!(rows, broken, "{threads} threads");
            assert_eq!(bytes, input.len() as u64);
        }
    }
}
