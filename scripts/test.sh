#!/usr/bin/env bash
# Weir's whole test suite, from a fresh clone: checks the toolchain and system libraries, then
# format, lint, starts the test services (two Kafka-protocol brokers and a schema registry, see
# scripts/test-env), runs unit, integration and doc tests (including a 2-process cluster run on
# 127.0.0.1), every example, and short runs of the benchmarks. Exits non-zero on the first failure.
#
# CARGO_TARGET_DIR is respected (CI keeps one outside the clone to reuse builds). The brokers are
# built once with `cargo install` into ~/.cache/weir-brokers (WEIR_BROKER_CACHE): 20-50 minutes the
# first time on 2 cores, nothing after that.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup (https://rustup.rs)"; exit 1; }
cargo --version
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

step "system libraries (RocksDB, libclang for its bindings; cmake and curl headers for librdkafka)"
# The RocksDB state backend links Debian's librocksdb; its bindings are generated with libclang.
# rdkafka builds librdkafka 2.12 with cmake (Debian's 2.0 is too old), whose headers need curl's.
missing=()
for package in librocksdb-dev libclang-dev cmake libcurl4-openssl-dev zlib1g-dev; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "librocksdb $(dpkg -s librocksdb-dev | sed -n 's/^Version: //p'), libclang $(dpkg -s libclang-dev | sed -n 's/^Version: //p')"

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "test services (Kafka brokers, schema registry)"
cargo build --quiet --bin weir
WEIR_BIN="${CARGO_TARGET_DIR:-target}/debug/weir" scripts/test-env up
# shellcheck disable=SC1091
source target/test-env/env.sh
trap 'scripts/test-env down' EXIT

step "tests (unit, integration, doc, 2-process cluster)"
test_log="$(mktemp)"
cargo test --workspace 2>&1 | tee "$test_log"
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$test_log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$test_log" | awk '{s += $1} END {print s + 0}')

if [ -z "${WEIR_KAFKA_EOS_BROKERS:-}" ]; then
  echo "SKIPPED (no real Kafka): the exactly-once visibility test (tests/kafka_sink.rs, real_kafka_*: read_committed"
  echo "  hides aborted sink data) passed vacuously; set WEIR_KAFKA_EOS_BROKERS=host:port to a real Apache Kafka to run it."
fi

step "guide (mdBook; its code blocks ran above as doctests)"
scripts/build-guide.sh "${TMPDIR:-/tmp}/weir-guide"

step "examples"
# quickstart's first 10 s window is final at most ~13 s after it starts; the others are bounded.
for example in quickstart append_mode update_mode complete_mode lookup_join running_count sessionization \
  kafka_window_count kafka_avro_exactly_once schema_evolution checkpointed_counts; do
  echo "-- example $example"
  cargo run --quiet --example "$example" -- --seconds 14 > "${TMPDIR:-/tmp}/weir-example-$example.out"
  head -n 12 "${TMPDIR:-/tmp}/weir-example-$example.out"
  [ -s "${TMPDIR:-/tmp}/weir-example-$example.out" ] || { echo "example $example printed nothing"; exit 1; }
done

step "benches (short runs; full numbers: cargo bench)"
WEIR_BENCH_ROWS="${WEIR_BENCH_ROWS:-4000000}" cargo bench --bench window_count
# The operator benches, each on a small input: they must run and check their results.
for bench in lookup_join session dedup distinct interval_join keyed_state nexmark kafka_source checkpoint_cost; do
  WEIR_BENCH_ROWS="${WEIR_BENCH_SMALL_ROWS:-200000}" cargo bench --bench "$bench"
done

step "all checks passed"
echo "tests: $passed passed, $failed failed"
