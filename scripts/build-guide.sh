#!/usr/bin/env bash
# Builds the concepts guide (docs/guide, an mdBook) into target/guide (or $1), installing a pinned
# mdBook into ~/.cache/weir-tools (WEIR_TOOLS) first if it is missing. The guide's Rust blocks are
# tested separately, as doctests of the weir crate: cargo test --doc -p weir guide.
#
# The install is reproducible: a fixed version, --locked, no default features (no `serve`/`watch`,
# so no tokio/axum/notify; `mdbook build` needs none of them). It takes about 1.5 minutes on
# 2 cores the first time, nothing after that.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4
tools="${WEIR_TOOLS:-$HOME/.cache/weir-tools}"
mdbook="$tools/bin/mdbook"
out="${1:-target/guide}"

if ! "$mdbook" --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
  echo "installing mdbook $MDBOOK_VERSION into $tools"
  CARGO_TARGET_DIR="$tools/build" cargo install mdbook --version "$MDBOOK_VERSION" --locked \
    --no-default-features --root "$tools"
fi

"$mdbook" build docs/guide --dest-dir "$(realpath -m "$out")"
echo "guide: $out/index.html"
