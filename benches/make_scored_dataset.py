"""Writes a synthetic scored dataset (LMFlow's ``text_to_scored_textlist``) of any size.

Two styles:

- ``random``: texts of random words (with some non-ASCII words and characters JSON must
  escape), lengths drawn from a log-normal distribution, scores ~ N(0, 1). For benchmarks:
  1M prompts x 8 responses of ~500 characters is ~4.5 GB of JSON Lines.
- ``preference``: short answers mixing helpful, polite sentences and curt, rude ones; the
  score grows with the share of helpful sentences (plus noise), so a small model can learn
  the preference. For demos and examples.

Everything is vectorised with NumPy per batch of prompts and written through dpov2's own
writers (JSON Lines, LMFlow JSON or Parquet, from the extension or ``--format``), so the file
is complete or absent.

    python benches/make_scored_dataset.py bench-out/scored.jsonl --prompts 1000000
    python benches/make_scored_dataset.py examples/data/scored_sample.json --prompts 300 \\
        --responses 4-8 --style preference --seed 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpov2.formats import SCORED_TYPE, open_writer
from dpov2.formats.instances import OUTPUT_TYPE

COMMON_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their been has when who will "
    "more no if out so said what up its about into than them can only other new some could "
    "time these two may then do first any my now such like our over man me even most made "
    "after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three model "
    "answer reward token prompt response question gradient policy value café naïve über "
    "façade résumé smörgåsbord 日本語 中文 Ελληνικά русский 🙂 👍 "
)
# Common words, some non-ASCII ones, and some with characters JSON must escape.
RANDOM_WORDS = (
    *COMMON_WORDS.split(),
    '"quoted"',
    "back\\slash",
    "tab\there",
    "new\nline",
)

GOOD_PHRASES = (
    "Sure, happy to help!",
    "Here is a clear answer.",
    "First, check the basics.",
    "Then go one step at a time.",
    "Take your time and be careful.",
    "This is a good and correct way to do it.",
    "I hope this is useful.",
    "Thank you for asking!",
    "Please ask again if anything is unclear.",
    "Have a great day.",
)
BAD_PHRASES = (
    "Whatever.",
    "Figure it out yourself.",
    "Not my problem.",
    "Stop asking.",
    "Dunno.",
    "Meh.",
    "Bad question.",
    "Go away.",
    "That is wrong, and so are you.",
    "Boring.",
)
TOPICS = (
    "bake bread",
    "learn Python",
    "fix a bike",
    "sleep better",
    "write a poem",
    "plant tomatoes",
    "save money",
    "start running",
    "train a dog",
    "cook rice",
    "paint a wall",
    "study for exams",
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    lo, hi = args.responses
    start = time.perf_counter()
    with open_writer(
        args.output, args.format, dataset_type=SCORED_TYPE, overwrite=args.overwrite
    ) as writer:
        for first in range(0, args.prompts, args.batch_prompts):
            n = min(args.batch_prompts, args.prompts - first)
            counts = rng.integers(lo, hi + 1, size=n)
            if args.style == "random":
                table = random_batch(rng, first, counts, args.mean_chars, args.length_spread)
            else:
                table = preference_batch(rng, first, counts)
            writer.write(table)
        writer.finish(table_schema())
    seconds = time.perf_counter() - start
    size = args.output.stat().st_size
    print(f"wrote {args.prompts} prompts, {size / 1e6:.1f} MB, in {seconds:.1f} s: {args.output}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help=".jsonl, .json (LMFlow) or .parquet")
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument(
        "--responses", type=_range, default=(8, 8), help="per prompt: N, or LO-HI (uniform)"
    )
    parser.add_argument(
        "--mean-chars", type=float, default=460, help="mean response length (random style)"
    )
    parser.add_argument(
        "--length-spread", type=float, default=0.5, help="sigma of the log-normal lengths"
    )
    parser.add_argument("--style", choices=("random", "preference"), default="random")
    parser.add_argument("--format", choices=("jsonl", "json", "parquet"), default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-prompts", type=int, default=4096)
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    bounds = (int(lo), int(hi or lo))
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected N or LO-HI with 0 <= LO <= HI, got {text}")
    return bounds


def table_schema() -> pa.Schema:
    return pa.schema([("input", pa.string()), ("output", OUTPUT_TYPE)])


def random_batch(
    rng: np.random.Generator, first: int, counts: np.ndarray, mean_chars: float, spread: float
) -> pa.Table:
    """Prompts of ~20 words and ``counts[p]`` responses of log-normal length each."""
    vocab = Vocabulary(RANDOM_WORDS)
    n_responses = int(counts.sum())
    words = np.maximum(1, rng.lognormal(np.log(mean_chars / vocab.mean_bytes), spread, n_responses))
    texts = vocab.texts(rng, words.astype(np.int64))
    prompt_words = vocab.texts(rng, rng.integers(10, 30, size=len(counts)))
    prefixes = pa.array([f"Prompt {first + p}: " for p in range(len(counts))], pa.large_string())
    prompts = pc.binary_join_element_wise(prefixes, prompt_words, pa.scalar("", pa.large_string()))
    scores = np.round(rng.normal(0.0, 1.0, n_responses), 4)
    return _assemble(prompts, counts, texts, scores)


def preference_batch(rng: np.random.Generator, first: int, counts: np.ndarray) -> pa.Table:
    """Answers of 2-5 sentences, each helpful with probability ``quality``; score ~ quality."""
    n_responses = int(counts.sum())
    quality = rng.random(n_responses)
    sentences = rng.integers(2, 6, size=n_responses)
    helpful = rng.random(int(sentences.sum())) < np.repeat(quality, sentences)
    ids = np.where(
        helpful,
        rng.integers(0, len(GOOD_PHRASES), helpful.size),
        rng.integers(0, len(BAD_PHRASES), helpful.size) + len(GOOD_PHRASES),
    )
    texts = Vocabulary(GOOD_PHRASES + BAD_PHRASES).join(ids, sentences)
    topics = rng.integers(0, len(TOPICS), size=len(counts))
    prompts = pa.array([f"How do I {TOPICS[t]}?" for t in topics])
    scores = np.round(4.0 * quality - 2.0 + rng.normal(0.0, 0.3, n_responses), 3)
    return _assemble(prompts, counts, texts, scores)


def _assemble(
    prompts: pa.Array, counts: np.ndarray, texts: pa.Array, scores: np.ndarray
) -> pa.Table:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    responses = pa.StructArray.from_arrays(
        [texts.cast(pa.string()), pa.array(scores)], names=["text", "score"]
    )
    outputs = pa.ListArray.from_arrays(pa.array(offsets), responses)
    return pa.table({"input": prompts.cast(pa.string()), "output": outputs})


class Vocabulary:
    """Words in one byte buffer (each followed by a space), so that texts are assembled by a
    single vectorised gather."""

    def __init__(self, words: tuple[str, ...] | list[str]) -> None:
        encoded = [w.encode() for w in words]
        self.bytes = np.frombuffer(b"".join(w + b" " for w in encoded), dtype=np.uint8)
        self.lengths = np.array([len(w) for w in encoded], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths + 1)[:-1]])
        self.mean_bytes = float(self.lengths.mean()) + 1  # with the space after it

    def texts(self, rng: np.random.Generator, word_counts: np.ndarray) -> pa.Array:
        """One text per entry of ``word_counts`` (each >= 1), of that many random words."""
        ids = rng.integers(0, len(self.lengths), size=int(word_counts.sum()))
        return self.join(ids, word_counts)

    def join(self, ids: np.ndarray, word_counts: np.ndarray) -> pa.Array:
        """The words ``ids`` joined by spaces, ``word_counts[t]`` (>= 1) of them for text ``t``."""
        sizes = self.lengths[ids] + 1
        last = np.cumsum(word_counts) - 1  # each text's last word: no space after it
        sizes[last] -= 1
        ends = np.cumsum(sizes)
        gather = np.arange(int(ends[-1])) - np.repeat(ends - sizes - self.starts[ids], sizes)
        offsets = np.concatenate([[0], ends[last]]).astype(np.int64)
        return pa.LargeStringArray.from_buffers(
            len(word_counts), pa.py_buffer(offsets), pa.py_buffer(self.bytes[gather])
        )


if __name__ == "__main__":
    sys.exit(main())
