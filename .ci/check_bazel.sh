#!/usr/bin/env bash
# Checks the Bazel BUILD files offline: `bazel query //... --nofetch` must succeed (native
# py_library / py_binary / py_test rules only), and every file named in srcs must exist.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bazel >/dev/null 2>&1; then
  echo "bazel not found: installing Debian's bazel-bootstrap"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq bazel-bootstrap >/dev/null
fi
# A private output base keeps the check from touching the user's Bazel cache.
out_base="$(mktemp -d)"
trap 'bazel --output_base="$out_base" shutdown >/dev/null 2>&1 || true; rm -rf "$out_base"' EXIT
bz() { bazel --output_base="$out_base" --batch "$@"; }
# A fresh output base has not unpacked Bazel's embedded @bazel_tools yet, and --nofetch
# refuses to; one plain query unpacks it (from the bazel binary itself: no network).
bz query //... >/dev/null 2>&1 || true
targets=$(bz query //... --nofetch 2>/tmp/bazel_query.err) || { cat /tmp/bazel_query.err; exit 1; }
echo "bazel query //... --nofetch: $(echo "$targets" | wc -l) targets"
# Every source file a rule names must exist in the tree.
missing=0
while read -r label; do
  path="${label#//}"; path="${path/://}"; path="${path#/}"
  if [ ! -f "$path" ]; then echo "missing source file: $label"; missing=1; fi
done < <(bz query 'labels(srcs, //...)' --nofetch 2>/dev/null | grep '^//')
[ "$missing" = 0 ] || { echo "BUILD names files that do not exist"; exit 1; }
echo "BUILD check passed"
