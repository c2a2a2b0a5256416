use dpov2_core::{select_pairs, Lengths, Method, Options, PairError, Selection, Status};
use proptest::prelude::*;

fn options(method: Method) -> Options {
    Options {
        method,
        length_penalty: 0.0,
        seed: 42,
        first_key: 0,
        keep_ties: false,
    }
}

fn select(scores: &[f64], offsets: &[i64], method: Method) -> Selection {
    select_pairs(scores, None, offsets, &options(method)).unwrap()
}

#[test]
fn max_methods_pick_best_worst_and_runner_up() {
    let scores = [0.5, 3.0, -1.0, 2.0];
    let offsets = [0, 4];
    let s = select(&scores, &offsets, Method::MaxMin);
    assert_eq!((s.chosen[0], s.rejected[0]), (1, 2));
    let s = select(&scores, &offsets, Method::MaxMax);
    assert_eq!((s.chosen[0], s.rejected[0]), (1, 3));
    let s = select(&scores, &offsets, Method::MaxRandom);
    assert_eq!(s.chosen[0], 1);
    assert_ne!(s.rejected[0], 1);
}

#[test]
fn ties_in_ranking_go_to_the_lowest_index() {
    // Maxima at 1 and 3, minima at 0 and 2.
    let scores = [0.0, 5.0, 0.0, 5.0, 1.0];
    let offsets = [0, 5];
    let mut opts = options(Method::MaxMin);
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!((s.chosen[0], s.rejected[0]), (1, 0));
    // Best vs second best are equal: a tie, dropped by default, kept on request.
    opts.method = Method::MaxMax;
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!(
        (s.chosen[0], s.rejected[0], s.status[0]),
        (-1, -1, Status::Tie as u8)
    );
    opts.keep_ties = true;
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!(
        (s.chosen[0], s.rejected[0], s.status[0]),
        (1, 3, Status::Paired as u8)
    );
}

#[test]
fn all_equal_rewards_still_give_two_distinct_responses_when_ties_are_kept() {
    let opts = Options {
        keep_ties: true,
        ..options(Method::MaxMin)
    };
    let s = select_pairs(&[2.0, 2.0, 2.0], None, &[0, 3], &opts).unwrap();
    assert_eq!((s.chosen[0], s.rejected[0]), (0, 1));
}

#[test]
fn prompts_with_fewer_than_two_responses_are_reported_not_paired() {
    let s = select(&[1.0, 2.0, 3.0], &[0, 0, 1, 3], Method::MaxMin);
    assert_eq!(s.status, vec![1, 1, 0]);
    assert_eq!(s.chosen, vec![-1, -1, 2]);
    assert_eq!(s.rejected, vec![-1, -1, 1]);
}

#[test]
fn length_penalty_changes_the_ranking() {
    let scores = [1.0, 1.5];
    let lengths = [10.0, 100.0];
    let opts = Options {
        length_penalty: 0.01,
        ..options(Method::MaxMin)
    };
    let s = select_pairs(&scores, Some(lengths[..].into()), &[0, 2], &opts).unwrap();
    assert_eq!((s.chosen[0], s.rejected[0]), (0, 1));
    let opts = Options {
        length_penalty: -0.01,
        ..opts
    };
    let s = select_pairs(&scores, Some(lengths[..].into()), &[0, 2], &opts).unwrap();
    assert_eq!((s.chosen[0], s.rejected[0]), (1, 0));
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let opts = options(Method::Random);
    let err = select_pairs(&[1.0, f64::NAN], None, &[0, 2], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "scores[1] is nan (prompt 0, response 1); scores must be finite"
    );
    let lp = Options {
        length_penalty: 1.0,
        ..opts
    };
    assert_eq!(
        select_pairs(&[1.0], None, &[0, 1], &lp),
        Err(PairError::PenaltyWithoutLengths)
    );
    let far = Options {
        first_key: u64::MAX,
        ..opts
    };
    assert!(matches!(
        select_pairs(&[1.0, 2.0, 3.0], None, &[0, 1, 3], &far),
        Err(PairError::KeyOverflow { .. })
    ));
    assert!("best".parse::<Method>().is_err());
}

#[test]
fn offsets_errors_name_the_first_offending_prompt() {
    let opts = options(Method::MaxMin);
    let run = |scores: &[f64], offsets: &[i64]| select_pairs(scores, None, offsets, &opts);
    assert_eq!(run(&[], &[]), Err(PairError::EmptyOffsets));
    assert_eq!(run(&[0.0; 2], &[1, 2]), Err(PairError::OffsetsStart(1)));
    assert_eq!(
        run(&[0.0; 3], &[0, 2, 1, 0]),
        Err(PairError::OffsetsDecrease {
            prompt: 1,
            start: 2,
            end: 1
        })
    );
    assert_eq!(
        run(&[0.0; 3], &[0, 4, 5]),
        Err(PairError::OffsetsPastEnd {
            prompt: 0,
            end: 4,
            n_scores: 3
        })
    );
    assert_eq!(
        run(&[0.0; 3], &[0, 2]),
        Err(PairError::OffsetsShort {
            end: 2,
            n_scores: 3
        })
    );
    assert!(run(&[0.0; 3], &[0, 0, 3, 3]).is_ok());
}

#[test]
fn offsets_errors_outrank_key_and_value_errors_anywhere() {
    // Many prompts, so the bad value (prompt 0) and the bad offsets fall in different
    // parallel tasks (of 2048 prompts).
    let n_prompts = 10_000;
    let mut offsets: Vec<i64> = (0..=n_prompts).map(|p| 2 * p as i64).collect();
    let mut scores = vec![1.0; 2 * n_prompts];
    scores[0] = f64::NAN;
    let far = Options {
        first_key: u64::MAX,
        ..options(Method::Random)
    };
    let err = select_pairs(&scores, None, &offsets, &far).unwrap_err();
    assert!(matches!(err, PairError::KeyOverflow { .. }), "{err}");
    let err = select_pairs(&scores, None, &offsets, &options(Method::Random)).unwrap_err();
    assert!(matches!(err, PairError::BadScore { index: 0, .. }), "{err}");
    offsets[9001] = -5;
    let err = select_pairs(&scores, None, &offsets, &far).unwrap_err();
    assert_eq!(
        err,
        PairError::OffsetsDecrease {
            prompt: 9000,
            start: 18_000,
            end: -5
        }
    );
    offsets[9001] = 1 << 40;
    let err = select_pairs(&scores, None, &offsets, &far).unwrap_err();
    assert!(
        matches!(err, PairError::OffsetsPastEnd { prompt: 9000, .. }),
        "{err}"
    );
    // The last prompt of a task ends before 0: the next task starts there and must neither
    // read out of bounds nor hide the error.
    offsets[9001] = 18_002;
    offsets[8192] = -5;
    let err = select_pairs(&scores, None, &offsets, &far).unwrap_err();
    assert!(
        matches!(
            err,
            PairError::OffsetsDecrease {
                prompt: 8191,
                end: -5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn values_are_checked_in_flat_order_past_empty_prompts() {
    let offsets = [0, 2, 2, 2, 4];
    let opts = options(Method::MaxMax);
    let err = select_pairs(&[0.0, 1.0, 2.0, f64::INFINITY], None, &offsets, &opts).unwrap_err();
    assert_eq!(
        err,
        PairError::BadScore {
            index: 3,
            prompt: 3,
            response: 1,
            value: f64::INFINITY
        }
    );
    let lengths = [1i32, 1, -1, -1];
    let err = select_pairs(&[0.0; 4], Some(lengths[..].into()), &offsets, &opts).unwrap_err();
    assert_eq!(
        err,
        PairError::BadLength {
            index: 2,
            prompt: 3,
            response: 0,
            value: -1.0
        }
    );
    // A lone bad response (too few to pair) is still an error.
    let err = select_pairs(&[f64::NAN], None, &[0, 1], &opts).unwrap_err();
    assert!(matches!(err, PairError::BadScore { index: 0, .. }));
}

/// Prompts of 1..=12 responses with coarse scores, so ties are common.
fn prompts() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<i64>)> {
    prop::collection::vec(1usize..=12, 1..60).prop_flat_map(|sizes| {
        let total: usize = sizes.iter().sum();
        let mut offsets = vec![0i64];
        for n in &sizes {
            offsets.push(offsets.last().unwrap() + *n as i64);
        }
        (
            prop::collection::vec((-4i32..4).prop_map(f64::from), total),
            prop::collection::vec((0u32..50).prop_map(f64::from), total),
            Just(offsets),
        )
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Random),
        Just(Method::MaxMin),
        Just(Method::MaxMax),
        Just(Method::MaxRandom)
    ]
}

proptest! {
    #[test]
    fn chosen_beats_rejected_within_the_same_prompt(
        (scores, lengths, offsets) in prompts(), method in method(), seed: u64, lp in -0.2f64..0.2,
    ) {
        let opts = Options { method, length_penalty: lp, seed, first_key: 0, keep_ties: false };
        let s = select_pairs(&scores, Some(lengths[..].into()), &offsets, &opts).unwrap();
        for p in 0..offsets.len() - 1 {
            if s.status[p] != Status::Paired as u8 {
                prop_assert_eq!((s.chosen[p], s.rejected[p]), (-1, -1));
                continue;
            }
            let (c, j) = (s.chosen[p] as usize, s.rejected[p] as usize);
            prop_assert!(c != j);
            for i in [c, j] {
                prop_assert!(offsets[p] as usize <= i && i < offsets[p + 1] as usize);
            }
            let r = |i: usize| scores[i] - lp * lengths[i];
            prop_assert!(r(c) > r(j));
        }
    }

    #[test]
    fn integer_lengths_select_as_their_float_values(
        (scores, lengths, offsets) in prompts(), method in method(), seed: u64, lp in -0.2f64..0.2,
    ) {
        let opts = Options { method, length_penalty: lp, seed, first_key: 0, keep_ties: false };
        let as_f64 = select_pairs(&scores, Some(Lengths::F64(&lengths)), &offsets, &opts).unwrap();
        let i64s: Vec<i64> = lengths.iter().map(|&l| l as i64).collect();
        let i32s: Vec<i32> = lengths.iter().map(|&l| l as i32).collect();
        prop_assert_eq!(&select_pairs(&scores, Some(Lengths::I64(&i64s)), &offsets, &opts).unwrap(), &as_f64);
        prop_assert_eq!(&select_pairs(&scores, Some(Lengths::I32(&i32s)), &offsets, &opts).unwrap(), &as_f64);
    }

    #[test]
    fn chunked_selection_equals_whole_selection(
        (scores, _lengths, offsets) in prompts(), method in method(), seed: u64, cut in 0usize..60,
    ) {
        let opts = Options { method, length_penalty: 0.0, seed, first_key: 0, keep_ties: true };
        let whole = select_pairs(&scores, None, &offsets, &opts).unwrap();
        let cut = cut.min(offsets.len() - 1);
        let base = offsets[cut];
        let head: Vec<i64> = offsets[..=cut].to_vec();
        let tail: Vec<i64> = offsets[cut..].iter().map(|o| o - base).collect();
        let a = select_pairs(&scores[..base as usize], None, &head, &opts).unwrap();
        let b_opts = Options { first_key: cut as u64, ..opts };
        let b = select_pairs(&scores[base as usize..], None, &tail, &b_opts).unwrap();
        let shift = |v: i64| if v < 0 { v } else { v + base };
        let chosen: Vec<i64> = a.chosen.iter().copied().chain(b.chosen.iter().map(|&v| shift(v))).collect();
        let rejected: Vec<i64> =
            a.rejected.iter().copied().chain(b.rejected.iter().map(|&v| shift(v))).collect();
        prop_assert_eq!(chosen, whole.chosen);
        prop_assert_eq!(rejected, whole.rejected);
    }
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let n_prompts = 20_000;
    let offsets: Vec<i64> = (0..=n_prompts).map(|p| (p * 5) as i64).collect();
    let scores: Vec<f64> = (0..n_prompts * 5)
        .map(|i| ((i * 7919) % 13) as f64)
        .collect();
    for method in [
        Method::Random,
        Method::MaxMin,
        Method::MaxMax,
        Method::MaxRandom,
    ] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| select_pairs(&scores, None, &offsets, &options(method)).unwrap())
        };
        assert_eq!(run(1), run(4));
    }
}

#[test]
fn random_picks_every_unordered_pair_equally_often() {
    // One prompt of 4 responses with distinct scores, drawn under 12,000 keys: 6 unordered
    // pairs, expected 2,000 each; a chi-square statistic over 5 degrees of freedom above
    // 25 has probability < 1.4e-4 under uniformity.
    let n_prompts = 12_000;
    let offsets: Vec<i64> = (0..=n_prompts).map(|p| (p * 4) as i64).collect();
    let scores: Vec<f64> = (0..n_prompts * 4).map(|i| (i % 4) as f64).collect();
    let s = select(&scores, &offsets, Method::Random);
    let mut counts = [[0u32; 4]; 4];
    for p in 0..n_prompts {
        let (c, j) = ((s.chosen[p] % 4) as usize, (s.rejected[p] % 4) as usize);
        counts[c.max(j)][c.min(j)] += 1;
    }
    let expected = n_prompts as f64 / 6.0;
    let mut chi2 = 0.0;
    for (hi, row) in counts.iter().enumerate() {
        for &count in &row[..hi] {
            chi2 += (count as f64 - expected).powi(2) / expected;
        }
    }
    assert!(chi2 < 25.0, "chi2 = {chi2}, counts = {counts:?}");
}
