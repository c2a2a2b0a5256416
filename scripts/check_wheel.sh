#!/usr/bin/env bash
# Builds the release wheel, installs it into a fresh virtual environment with no Rust
# toolchain on PATH, and pairs a few prompts with it: proof that users need no compiler.
# Usage: scripts/check_wheel.sh PYTHON
set -euo pipefail
python=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m maturin build --release --quiet --out "$work/dist" --manifest-path "$root/Cargo.toml"
wheel=$(ls "$work"/dist/dpov2-*.whl)
case "$wheel" in
  *-cp310-abi3-*) ;;
  *) echo "expected one abi3 wheel for CPython >= 3.10, got $wheel" >&2; exit 1 ;;
esac

"$python" -m venv "$work/venv"
# No cargo/rustc reachable: the wheel must install and run as a binary.
clean_path=$(echo "$PATH" | tr ':' '\n' | grep -v -e cargo -e rustup | paste -sd: -)
PATH="$clean_path" "$work/venv/bin/python" -m pip install --quiet "$wheel"
if PATH="$clean_path" command -v cargo >/dev/null; then
  echo "cargo still on PATH; the check would prove nothing" >&2; exit 1
fi
cd "$work"  # away from the source tree, so `import dpov2` can only find the installed wheel
PATH="$clean_path" "$work/venv/bin/python" - <<'PY'
import dpov2, dpov2._core
sel = dpov2.select_pairs([0.1, 0.9, 0.5, 2.0, 1.0], [0, 3, 5], method="max_min")
assert sel.chosen.tolist() == [1, 3] and sel.rejected.tolist() == [0, 4], sel
print(f"wheel OK: {dpov2._core.__file__}")
PY
echo "checked $(basename "$wheel")"
