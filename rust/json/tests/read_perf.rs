//! Parse throughput on scored JSON Lines with ~500-character texts, ASCII and not. Ignored
//! (a measurement, not a test); run it with
//! `cargo test --release -p dpov2-json --test read_perf -- --ignored --nocapture`
//! (`MAX_MB=32` for batches of 32 MiB instead of 4).

use std::time::Instant;

use dpov2_json::{Framing, ReadOptions, Reader, Schema};

/// About `megabytes` of scored lines: each row a prompt and four 500-character responses.
fn scored_lines(megabytes: usize, alphabet: &[char]) -> Vec<u8> {
    let mut out = String::new();
    let mut k = 0usize;
    let mut text = |len: usize| -> String {
        (0..len)
            .map(|_| {
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                alphabet[(k >> 33) % alphabet.len()]
            })
            .collect()
    };
    while out.len() < megabytes << 20 {
        let prompt = text(200);
        let responses: Vec<String> = (0..4)
            .map(|i| format!("{{\"text\": \"{}\", \"score\": {}.25}}", text(500), i))
            .collect();
        out.push_str(&format!(
            "{{\"input\": \"{prompt}\", \"output\": [{}]}}\n",
            responses.join(", ")
        ));
    }
    out.into_bytes()
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat` (Linux), so
/// that the rate per core can be told on a machine shared with other work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

/// (MB per wall second, MB per CPU second), best of three.
fn throughput(input: &[u8], threads: usize) -> (f64, f64) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let options = ReadOptions {
        framing: Framing::Lines,
        schema: Schema::Scored,
        max_rows: 1 << 20,
        max_bytes: std::env::var("MAX_MB").map_or(4, |v| v.parse().unwrap()) << 20,
    };
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let started = Instant::now();
        let cpu = cpu_seconds();
        let rows = pool.install(|| {
            let mut reader = Reader::new(input, options);
            let mut rows = 0;
            while let Some(batch) = reader.next_batch().unwrap() {
                assert!(batch.problems.is_empty());
                rows += batch.columns.num_rows();
            }
            rows
        });
        assert!(rows > 0);
        best = best.min(started.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_seconds() - cpu);
    }
    let mb = input.len() as f64 / 1e6;
    (mb / best, mb / best_cpu)
}

#[test]
#[ignore = "a measurement; run with --release --ignored --nocapture"]
fn scored_lines_throughput() {
    let ascii: Vec<char> = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ.,;0123456789"
        .chars()
        .collect();
    let mixed: Vec<char> = "日本語のテキストとéàü ascii words 中文".chars().collect();
    for (name, alphabet) in [("ascii", &ascii), ("non-ascii", &mixed)] {
        let input = scored_lines(128, alphabet);
        for threads in [1, 2] {
            let (wall, cpu) = throughput(&input, threads);
            println!(
                "{name:>9}, {threads} thread(s): {wall:.0} MB/s, {cpu:.0} MB per CPU second, \
                 over {} MB",
                input.len() >> 20
            );
        }
    }
}
