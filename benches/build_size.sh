#!/bin/sh
# Clean release build of a client-only consumer of umws-api next to the whole service.
#
#     benches/build_size.sh [WORKDIR]
#
# 1. client: a crate outside the workspace (in WORKDIR, default a new directory under /tmp)
#    whose whole [dependencies] are
#        umws-api = { path = "REPO/api", default-features = false, features = ["client"] }
#        tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
#    and whose main.rs is api/examples/client.rs (IsUMEnabled, GetUMProperties, ResetPIN);
# 2. service: `cargo build --release` at the top of the repository (the `umws` binary).
#
# Each is built with `cargo build --release` into a fresh CARGO_TARGET_DIR, timed with
# /usr/bin/time -v; the crates are counted from cargo's `Compiling` lines. The consumer uses
# the repository's Cargo.lock (so both builds compile the same versions), and `cargo fetch`
# runs before the clock starts (downloads are not build time). On a shared machine read the
# CPU seconds (user + sys) first: wall time depends on what else runs. Prints a Markdown
# table; the logs stay in WORKDIR, cargo's per-crate timings in
# WORKDIR/target-{client,service}/cargo-timings/. BUILD_SIZE_ONLY=client (or service) builds
# one of the two.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/umws-build-size.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ ! -x /usr/bin/time ]; then
    echo "build_size.sh needs GNU time as /usr/bin/time (Debian/Ubuntu: apt-get install time)" >&2
    exit 1
fi

# The client-only consumer.
CLIENT="$WORK/client"
rm -rf "$CLIENT"
mkdir -p "$CLIENT/src"
cat > "$CLIENT/Cargo.toml" <<EOF
[package]
name = "umws-client-size"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
umws-api = { path = "$ROOT/api", default-features = false, features = ["client"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }

# Not a member of any workspace above it.
[workspace]
EOF
cp "$ROOT/api/examples/client.rs" "$CLIENT/src/main.rs"
cp "$ROOT/Cargo.lock" "$CLIENT/Cargo.lock"

# Prints: wall seconds, user+sys seconds, Compiling lines, distinct crates compiled (name and
# version), crates in `cargo tree -e normal`, load average before and after.
measure() { # NAME DIR
    name=$1
    dir=$2
    target="$WORK/target-$name"
    rm -rf "$target"
    (cd "$dir" && cargo fetch --quiet)
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    (cd "$dir" && CARGO_TARGET_DIR="$target" /usr/bin/time -v -o "$WORK/$name.time" \
        cargo build --release --timings --color never) > "$WORK/$name.log" 2>&1 || {
        echo "cargo build --release failed in $dir (see $WORK/$name.log):" >&2
        tail -20 "$WORK/$name.log" >&2
        exit 1
    }
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' \
        "$WORK/$name.time")
    cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' \
        "$WORK/$name.time")
    compiling=$(grep -c '^ *Compiling ' "$WORK/$name.log" || true)
    crates=$(grep '^ *Compiling ' "$WORK/$name.log" | awk '{ print $2, $3 }' | sort -u | wc -l)
    # The normal dependency tree (proc macros included; build dependencies such as the code
    # generator left out), the package itself included.
    linked=$(cd "$dir" && cargo tree -e normal --prefix none 2>/dev/null | sed 's/ (\*)$//' |
        sort -u | wc -l)
    echo "$wall $cpu $compiling $crates $linked $load_before / $load_after"
}

echo "# build_size.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs" \
    "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))," \
    "$(cargo --version), $(rustc --version)"
ONLY=${BUILD_SIZE_ONLY:-}
client=""
service=""
if [ "$ONLY" != service ]; then client=$(measure client "$CLIENT"); fi
if [ "$ONLY" != client ]; then service=$(measure service "$ROOT"); fi
echo
echo "| build | wall s | user+sys CPU s | \`Compiling\` lines | crates compiled | crates in \`cargo tree -e normal\` | load average before / after |"
echo "|---|---:|---:|---:|---:|---:|---|"
row() { # LABEL "wall cpu compiling crates load..."
    label=$1
    shift
    set -- $1
    wall=$1 cpu=$2 compiling=$3 crates=$4 linked=$5
    shift 5
    echo "| $label | $wall | $cpu | $compiling | $crates | $linked | $* |"
}
if [ -n "$client" ]; then
    row "client-only consumer (umws-api, \`client\`, + tokio)" "$client"
fi
if [ -n "$service" ]; then
    row "whole service (\`umws\` binary)" "$service"
fi
echo
echo "logs: $WORK/{client,service}.{log,time}"
