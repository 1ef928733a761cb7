#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library 1.30.0 out of the npm package
# onnxruntime-node@1.30.0, checks its sha256 and installs it under .cache/.
# Idempotent: a library already in place with the right digest is kept.
set -euo pipefail

version=1.30.0
want=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
member=package/bin/napi-v6/linux/x64/libonnxruntime.so.1
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/onnxruntime/libonnxruntime.so.1"

if [ -f "$dest" ] && echo "$want  $dest" | sha256sum --check --status; then
  echo "ort: $dest (onnxruntime $version, sha256 ok)"
  exit 0
fi
command -v npm >/dev/null || { echo "ort: npm is needed to fetch onnxruntime-node@$version (apt-get install nodejs npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "ort: fetching onnxruntime-node@$version with npm pack (about 110 MB)..."
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tar -xzf "$tmp"/onnxruntime-node-"$version".tgz -C "$tmp" "$member"
got=$(sha256sum "$tmp/$member" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "ort: sha256 mismatch for $member: got $got, want $want" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
install -m 0644 "$tmp/$member" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "ort: installed $dest (onnxruntime $version, sha256 ok)"
