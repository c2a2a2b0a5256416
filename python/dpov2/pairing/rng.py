"""The per-prompt random stream, in plain Python.

Each prompt draws from a SplitMix64 stream seeded by ``(seed, key)``, where the key is the
prompt's global position. A draw is therefore a pure function of the seed and the prompt,
whatever the batching, the thread count or the path (this module or the Rust core) that
ran it.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    """SplitMix64's output function (Stafford's mix 13), a bijection on 64-bit integers."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class PromptRng:
    """The random stream of the prompt with global ``key`` under ``seed``."""

    def __init__(self, seed: int, key: int) -> None:
        self.state = mix64(mix64(seed) ^ key)

    def next_u64(self) -> int:
        """The next 64 uniformly distributed bits."""
        self.state = (self.state + GOLDEN_GAMMA) & MASK64
        return mix64(self.state)

    def below(self, n: int) -> int:
        """A uniform integer in ``range(n)``.

        Draws below ``2**64 % n`` are rejected, so what is left is a whole multiple of ``n``
        and ``x % n`` has no bias.
        """
        threshold = (1 << 64) % n
        while True:
            x = self.next_u64()
            if x >= threshold:
                return x % n
