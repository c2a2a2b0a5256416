use dpov2_core::{Inputs, Lengths, Method, Options, PairError, Selection, Status, TieOrder};
use proptest::prelude::*;

fn options(method: Method) -> Options {
    Options::new(method, 42)
}

fn select_pairs(
    scores: &[f64],
    lengths: Option<Lengths<'_>>,
    offsets: &[i64],
    options: &Options,
) -> Result<Selection, PairError> {
    let inputs = Inputs {
        scores,
        lengths,
        offsets,
        ..Inputs::default()
    };
    dpov2_core::select_pairs(&inputs, options)
}

fn select(scores: &[f64], offsets: &[i64], method: Method) -> Selection {
    select_pairs(scores, None, offsets, &options(method)).unwrap()
}

/// The pairs of prompt `p`, as (chosen, rejected) flat indices.
fn pairs(s: &Selection, p: usize) -> Vec<(i64, i64)> {
    let range = s.pair_offsets[p] as usize..s.pair_offsets[p + 1] as usize;
    range.map(|i| (s.chosen[i], s.rejected[i])).collect()
}

/// The first pair of prompt `p`, `(-1, -1)` without one.
fn pair(s: &Selection, p: usize) -> (i64, i64) {
    pairs(s, p).first().copied().unwrap_or((-1, -1))
}

#[test]
fn max_methods_pick_best_worst_and_runner_up() {
    let scores = [0.5, 3.0, -1.0, 2.0];
    let offsets = [0, 4];
    let s = select(&scores, &offsets, Method::MaxMin);
    assert_eq!(pair(&s, 0), (1, 2));
    let s = select(&scores, &offsets, Method::MaxMax);
    assert_eq!(pair(&s, 0), (1, 3));
    let s = select(&scores, &offsets, Method::MaxRandom);
    assert_eq!(s.chosen[0], 1);
    assert_ne!(s.rejected[0], 1);
    let s = select(&scores, &offsets, Method::TopBottom);
    assert_eq!(pairs(&s, 0), [(1, 2)]);
    let opts = Options {
        pairs_per_prompt: 2,
        ..options(Method::TopBottom)
    };
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!(pairs(&s, 0), [(1, 2), (3, 0)]);
    let opts = Options {
        pairs_per_prompt: 10,
        ..options(Method::Adjacent)
    };
    // Ranking 1, 3, 0, 2 (3, 2, 0.5, -1): margins 1, 1.5, 1.5, largest first.
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!(pairs(&s, 0), [(3, 0), (0, 2), (1, 3)]);
    let opts = Options {
        method: Method::AllPairs,
        ..opts
    };
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!(pairs(&s, 0).len(), 6);
    assert_eq!(pair(&s, 0), (1, 2));
}

#[test]
fn ties_in_ranking_go_to_the_lowest_index() {
    // Maxima at 1 and 3, minima at 0 and 2.
    let scores = [0.0, 5.0, 0.0, 5.0, 1.0];
    let offsets = [0, 5];
    let mut opts = options(Method::MaxMin);
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!(pair(&s, 0), (1, 0));
    // Best vs second best are equal: a tie is not eligible by default, so the next pair in
    // max_max's order (best against third) is taken; kept on request.
    opts.method = Method::MaxMax;
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!((pair(&s, 0), s.status[0]), ((1, 4), Status::Paired as u8));
    opts.keep_ties = true;
    let s = select_pairs(&scores, None, &offsets, &opts).unwrap();
    assert_eq!((pair(&s, 0), s.status[0]), ((1, 3), Status::Paired as u8));
}

#[test]
fn all_equal_rewards_still_give_two_distinct_responses_when_ties_are_kept() {
    let opts = Options {
        keep_ties: true,
        ..options(Method::MaxMin)
    };
    let s = select_pairs(&[2.0, 2.0, 2.0], None, &[0, 3], &opts).unwrap();
    assert_eq!(pair(&s, 0), (0, 1));
}

#[test]
fn prompts_with_fewer_than_two_responses_are_reported_not_paired() {
    let s = select(&[1.0, 2.0, 3.0], &[0, 0, 1, 3], Method::MaxMin);
    assert_eq!(s.status, vec![1, 1, 0]);
    assert_eq!(s.pair_offsets, vec![0, 0, 0, 1]);
    assert_eq!((s.chosen, s.rejected), (vec![2], vec![1]));
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
    assert_eq!(pair(&s, 0), (0, 1));
    let opts = Options {
        length_penalty: -0.01,
        ..opts
    };
    let s = select_pairs(&scores, Some(lengths[..].into()), &[0, 2], &opts).unwrap();
    assert_eq!(pair(&s, 0), (1, 0));
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

#[test]
fn the_first_bad_value_among_prompts_of_one_width_is_named() {
    // All prompts as wide as one the lanes rank: a later bad value must not replace it.
    for width in [2usize, 4, 8, 16] {
        let mut scores = vec![0.5; 10 * width];
        scores[3 * width + 1] = f64::NAN;
        scores[7 * width] = f64::INFINITY;
        let offsets: Vec<i64> = (0..=10).map(|p| (p * width) as i64).collect();
        for method in [Method::MaxMin, Method::Random, Method::TopBottom] {
            let err = select_pairs(&scores, None, &offsets, &options(method)).unwrap_err();
            assert!(
                matches!(err, PairError::BadScore { index, prompt: 3, response: 1, .. }
                    if index == 3 * width + 1),
                "{width} {method:?}: {err:?}"
            );
        }
    }
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
    prop::sample::select(
        Method::NAMES
            .iter()
            .map(|name| name.parse::<Method>().unwrap())
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #[test]
    fn chosen_beats_rejected_within_the_same_prompt(
        (scores, lengths, offsets) in prompts(), method in method(), seed: u64, lp in -0.2f64..0.2,
        k in 1usize..4,
    ) {
        let opts = Options { length_penalty: lp, pairs_per_prompt: k, ..Options::new(method, seed) };
        let s = select_pairs(&scores, Some(lengths[..].into()), &offsets, &opts).unwrap();
        for p in 0..offsets.len() - 1 {
            let found = pairs(&s, p);
            prop_assert_eq!(s.status[p] == Status::Paired as u8, !found.is_empty());
            prop_assert!(found.len() <= k);
            let mut seen = found.iter().map(|&(c, j)| (c.min(j), c.max(j))).collect::<Vec<_>>();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), found.len(), "a pair twice");
            for (c, j) in found {
                let (c, j) = (c as usize, j as usize);
                prop_assert!(c != j);
                for i in [c, j] {
                    prop_assert!(offsets[p] as usize <= i && i < offsets[p + 1] as usize);
                }
                let r = |i: usize| scores[i] - lp * lengths[i];
                prop_assert!(r(c) > r(j));
            }
        }
    }

    #[test]
    fn integer_lengths_select_as_their_float_values(
        (scores, lengths, offsets) in prompts(), method in method(), seed: u64, lp in -0.2f64..0.2,
    ) {
        let opts = Options { length_penalty: lp, ..Options::new(method, seed) };
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
        let opts = Options { keep_ties: true, pairs_per_prompt: 2, ..Options::new(method, seed) };
        let whole = select_pairs(&scores, None, &offsets, &opts).unwrap();
        let cut = cut.min(offsets.len() - 1);
        let base = offsets[cut];
        let head: Vec<i64> = offsets[..=cut].to_vec();
        let tail: Vec<i64> = offsets[cut..].iter().map(|o| o - base).collect();
        let a = select_pairs(&scores[..base as usize], None, &head, &opts).unwrap();
        let b_opts = Options { first_key: cut as u64, ..opts };
        let b = select_pairs(&scores[base as usize..], None, &tail, &b_opts).unwrap();
        let chosen: Vec<i64> = a.chosen.iter().copied().chain(b.chosen.iter().map(|&v| v + base)).collect();
        let rejected: Vec<i64> =
            a.rejected.iter().copied().chain(b.rejected.iter().map(|&v| v + base)).collect();
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
    for name in Method::NAMES {
        let method = name.parse::<Method>().unwrap();
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

#[test]
fn lmflow_tie_order_breaks_ties_as_lmflow_does() {
    // [5, 3, 3]: LMFlow's np.argsort puts index 2 above 1, so max_max is (0, 2).
    let lmflow = Options {
        tie_order: TieOrder::Lmflow,
        keep_ties: true,
        ..options(Method::MaxMax)
    };
    let s = select_pairs(&[5.0, 3.0, 3.0], None, &[0, 3], &lmflow).unwrap();
    assert_eq!(pair(&s, 0), (0, 2));
    assert_eq!(
        pair(&select(&[5.0, 3.0, 3.0], &[0, 3], Method::MaxMax), 0),
        (0, 1)
    );
    // A kept tie: LMFlow chooses the second pick (np.argsort's next), dpov2 the first.
    let s = select_pairs(&[5.0, 5.0, 5.0], None, &[0, 3], &lmflow).unwrap();
    assert_eq!(pair(&s, 0), (1, 2));
    let dpov2 = Options {
        keep_ties: true,
        ..options(Method::MaxMax)
    };
    let s = select_pairs(&[5.0, 5.0, 5.0], None, &[0, 3], &dpov2).unwrap();
    assert_eq!(pair(&s, 0), (0, 1));
}

#[test]
fn copies_are_one_candidate_and_a_prompt_of_copies_has_its_own_status() {
    let scores = [1.0, 9.0, 0.0, 2.0, 2.0];
    let duplicate_of = [0, 0, 2, 0, 0];
    let inputs = Inputs {
        scores: &scores,
        offsets: &[0, 3, 5],
        duplicate_of: Some(&duplicate_of),
        ..Inputs::default()
    };
    let s = dpov2_core::select_pairs(&inputs, &options(Method::MaxMin)).unwrap();
    // The copy (9.0) of response 0 is not a candidate: 1.0 against 0.0.
    assert_eq!(pairs(&s, 0), [(0, 2)]);
    assert_eq!(s.status[1], Status::DuplicateResponses as u8);
    let bad = [0, 0, 1, 0, 0]; // response 2 names response 1, itself a copy
    let inputs = Inputs {
        duplicate_of: Some(&bad),
        ..inputs
    };
    let err = dpov2_core::select_pairs(&inputs, &options(Method::MaxMin)).unwrap_err();
    assert!(
        matches!(
            err,
            PairError::BadDuplicate {
                index: 2,
                value: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn filters_move_selection_to_the_next_eligible_pair_and_name_the_reason() {
    let scores = [3.0, 2.0, 0.0];
    let lengths = [100.0, 10.0, 12.0];
    let limited = Options {
        max_length_ratio: Some(2.0),
        ..options(Method::MaxMin)
    };
    let s = select_pairs(&scores, Some(lengths[..].into()), &[0, 3], &limited).unwrap();
    assert_eq!(pairs(&s, 0), [(1, 2)]); // 3.0 is 10x longer than both others
    let tight = Options {
        max_length_diff: Some(1.0),
        ..limited
    };
    let s = select_pairs(&scores, Some(lengths[..].into()), &[0, 3], &tight).unwrap();
    assert_eq!(s.status[0], Status::LengthLimits as u8);
    let margin = Options {
        min_margin: Some(2.5),
        ..options(Method::Random)
    };
    for seed in 0..20 {
        let s = select_pairs(&scores, None, &[0, 3], &Options { seed, ..margin }).unwrap();
        assert_eq!(pairs(&s, 0), [(0, 2)], "seed {seed}");
    }
    let s = select_pairs(
        &scores,
        None,
        &[0, 3],
        &Options {
            min_margin: Some(4.0),
            ..margin
        },
    );
    assert_eq!(s.unwrap().status[0], Status::BelowMinMargin as u8);
}

#[test]
fn keys_replace_the_position_of_the_prompt() {
    let scores: Vec<f64> = (0..40).map(f64::from).collect();
    let offsets: Vec<i64> = (0..=5).map(|p| p * 8).collect();
    let keys = [7u64, 7, 7, 7, 7];
    let inputs = Inputs {
        scores: &scores,
        offsets: &offsets,
        keys: Some(&keys),
        ..Inputs::default()
    };
    let s = dpov2_core::select_pairs(&inputs, &options(Method::Random)).unwrap();
    let local: Vec<i64> = (0..5).map(|p| pair(&s, p).0 - 8 * p as i64).collect();
    assert!(local.iter().all(|&c| c == local[0]), "{local:?}");
}

#[test]
fn pairs_of_many_tasks_with_unpaired_prompts_equal_each_prompt_selected_alone() {
    // Over three tasks of prompts, some without a pair (too few responses, all tied), so
    // the pairs of later tasks move down over the gaps; one and two pairs per prompt (the
    // outputs with slots) and three (gathered).
    let sizes: Vec<usize> = (0..7_000).map(|p| (p * 7) % 5).collect();
    let mut offsets = vec![0i64];
    let mut scores = Vec::new();
    for (p, &n) in sizes.iter().enumerate() {
        let tied = p % 11 == 0;
        scores.extend((0..n).map(|k| {
            if tied {
                1.0
            } else {
                ((p * 31 + k * 17) % 7) as f64
            }
        }));
        offsets.push(scores.len() as i64);
    }
    for name in Method::NAMES {
        let method = name.parse::<Method>().unwrap();
        for k in 1..=3 {
            let opts = Options {
                pairs_per_prompt: k,
                ..options(method)
            };
            let whole = select_pairs(&scores, None, &offsets, &opts).unwrap();
            assert!(whole.status.iter().any(|&s| s != Status::Paired as u8));
            for p in 0..sizes.len() {
                let (start, end) = (offsets[p] as usize, offsets[p + 1] as usize);
                let alone_opts = Options {
                    first_key: p as u64,
                    ..opts
                };
                let one = [0, (end - start) as i64];
                let alone = select_pairs(&scores[start..end], None, &one, &alone_opts).unwrap();
                let shifted: Vec<(i64, i64)> = pairs(&alone, 0)
                    .into_iter()
                    .map(|(c, r)| (c + start as i64, r + start as i64))
                    .collect();
                assert_eq!(pairs(&whole, p), shifted, "{name}, k={k}, prompt {p}");
                assert_eq!(
                    whole.status[p], alone.status[0],
                    "{name}, k={k}, prompt {p}"
                );
            }
        }
    }
}
