#!/usr/bin/env bash
# Build the demo agent as a static binary and wrap it in a FROM scratch image,
# apf-demo-agent:latest. Safe to run again: cargo and docker reuse what is unchanged.
# Usage: scripts/build-demo-image.sh [TAG]   (default apf-demo-agent:latest)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

tag="${1:-apf-demo-agent:latest}"
target="x86_64-unknown-linux-gnu"
# A target directory of its own, so these RUSTFLAGS never invalidate the main build.
target_dir="$repo/target/demo-agent"
context="$target_dir/image-context"

echo "building the static binary ($target)" >&2
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
  cargo build -p apf-demo-agent --release --target "$target" --target-dir "$target_dir"

binary="$target_dir/$target/release/apf-demo-agent"
if ldd "$binary" 2>&1 | grep -q '=>'; then
  echo "error: $binary is dynamically linked; a FROM scratch image needs a static binary" >&2
  exit 1
fi

# A context holding only the binary and the Dockerfile, so the repository is never sent.
rm -rf "$context"
mkdir -p "$context"
cp "$binary" "$context/apf-demo-agent"
cp "$repo/examples/demo-agent/Dockerfile" "$context/Dockerfile"

old_id="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
echo "building the image $tag" >&2
docker build --quiet --tag "$tag" "$context" >/dev/null
new_id="$(docker image inspect --format '{{.Id}}' "$tag")"

# A rebuild that moved the tag leaves the old image dangling; remove it unless a container uses it.
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi

size="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "built $tag (${new_id:7:12}, $((size / 1024)) KiB)" >&2
