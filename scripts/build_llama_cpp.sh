#!/usr/bin/env bash
# Build llama.cpp's `llama-server` and `llama-bench` (CPU only, Release) from the llama.cpp tree vendored in
# the llama-cpp-python source distribution on PyPI.
#
# Why the sdist: PyPI is the only source registry CI and developer machines reach, and the sdist ships the
# full vendor/llama.cpp tree, so a pinned-by-version, reproducible CPU engine can be built without GitHub.
# Why cache outside the clone: the build takes minutes on a shared 2-core box; CI runs in fresh clones, so
# the binaries live in ${HWBENCH_CACHE:-$HOME/.cache/hwbench}/llama.cpp/<sdist version>/bin/ and are reused.
#
# Usage: scripts/build_llama_cpp.sh [--version X.Y.Z] [--jobs N] [--print-bin-dir]
# Prints the bin directory (last line of stdout). Idempotent: exits early when both binaries exist.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-}"
JOBS="${HWBENCH_BUILD_JOBS:-2}"
CACHE_ROOT="${HWBENCH_CACHE:-$HOME/.cache/hwbench}/llama.cpp"

while [ $# -gt 0 ]; do
  case "$1" in
    --version) VERSION="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build_llama_cpp.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo "[build_llama_cpp] $*" >&2; }

# Present *and* runnable: a cache carried to a machine with another CPU may hold binaries built for
# instructions it lacks (SIGILL); those are rebuilt rather than trusted.
have_bins() {
  [ -x "$1/llama-server" ] && [ -x "$1/llama-bench" ] && "$1/llama-server" --version >/dev/null 2>&1
}

# Fast path: a pinned version already built, or (no pin) any cached version, newest first.
if [ -n "$VERSION" ]; then
  if have_bins "$CACHE_ROOT/$VERSION/bin"; then log "cached"; echo "$CACHE_ROOT/$VERSION/bin"; exit 0; fi
elif [ -d "$CACHE_ROOT" ]; then
  for d in $(find "$CACHE_ROOT" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -rV); do
    if have_bins "$CACHE_ROOT/$d/bin"; then log "cached"; echo "$CACHE_ROOT/$d/bin"; exit 0; fi
  done
fi

# One build at a time per cache (parallel CI jobs, a developer re-running it): the second waits, then
# finds the binaries the first one built.
mkdir -p "$CACHE_ROOT"
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/.build.lock"
  flock 9
  if [ -n "$VERSION" ] && have_bins "$CACHE_ROOT/$VERSION/bin"; then echo "$CACHE_ROOT/$VERSION/bin"; exit 0; fi
fi

for tool in cmake make cc c++ tar; do
  command -v "$tool" >/dev/null || { log "missing build tool: $tool (apt-get install cmake build-essential)"; exit 3; }
done

# The download goes to a temp dir; the source and build trees live in the cache (.work-<version>/)
# so that an interrupted build (Ctrl-C, CI time-out) resumes where make stopped instead of from scratch.
DL="$(mktemp -d "${TMPDIR:-/tmp}/llama-cpp-sdist.XXXXXX")"
trap 'rm -rf "$DL"' EXIT

SPEC="llama-cpp-python"
[ -n "$VERSION" ] && SPEC="llama-cpp-python==$VERSION"
log "downloading sdist $SPEC"
# --no-binary for this one package only: with ":all:" pip also builds the sdist's build requirements
# (scikit-build-core, hatchling, ...) from source just to read its metadata, which takes many minutes.
python3 -m pip download -q --no-deps --no-binary llama-cpp-python -d "$DL" "$SPEC" >&2
SDIST="$(find "$DL" -maxdepth 1 -name 'llama[-_]cpp[-_]python-*.tar.gz' | head -n1)"
[ -n "$SDIST" ] || { log "no sdist downloaded"; exit 4; }
VER="$(basename "$SDIST" .tar.gz)"; VER="${VER#llama_cpp_python-}"; VER="${VER#llama-cpp-python-}"
BIN="$CACHE_ROOT/$VER/bin"
if have_bins "$BIN"; then log "cached"; echo "$BIN"; exit 0; fi

WORK="$CACHE_ROOT/.work-$VER"
mkdir -p "$WORK"
if [ ! -f "$WORK/src.ok" ]; then
  log "unpacking $SDIST (version $VER)"
  rm -rf "$WORK/src" && mkdir -p "$WORK/src"
  tar -xzf "$SDIST" -C "$WORK/src" && touch "$WORK/src.ok"
fi
SRC="$(find "$WORK/src" -mindepth 3 -maxdepth 3 -type d -path '*/vendor/llama.cpp' | head -n1)"
[ -f "$SRC/CMakeLists.txt" ] || { log "vendor/llama.cpp not found in the sdist"; exit 4; }

log "configuring (CPU only, Release, no curl)"
nice -n 19 cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON >"$WORK/configure.log" 2>&1 || { tail -n 40 "$WORK/configure.log" >&2; exit 5; }

log "building llama-server llama-bench with -j$JOBS (takes minutes)"
start=$(date +%s)
nice -n 19 cmake --build "$WORK/build" --config Release -j"$JOBS" --target llama-server llama-bench \
  >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log" >&2; exit 6; }
log "built in $(( $(date +%s) - start ))s"

# Install atomically: copy into a temp dir beside the target, then rename, so a concurrent or interrupted
# build never leaves a half-filled bin/ that the fast path would trust.
mkdir -p "$CACHE_ROOT/$VER"
STAGE="$(mktemp -d "$CACHE_ROOT/$VER/.bin.XXXXXX")"
for t in llama-server llama-bench; do
  f="$(find "$WORK/build" -type f -name "$t" -perm -u+x | head -n1)"
  [ -n "$f" ] || { log "built binary $t not found"; exit 6; }
  cp "$f" "$STAGE/$t"
done
# Shared libs are off, but copy any that a toolchain still produced so the binaries run from the cache.
find "$WORK/build" -name '*.so*' -type f -exec cp {} "$STAGE/" \; 2>/dev/null || true
chmod 755 "$STAGE"
rm -rf "$BIN"
mv "$STAGE" "$BIN"
"$BIN/llama-server" --version >&2 2>&1 || true
rm -rf "$WORK"   # sources + objects (~hundreds of MB); the binaries are all that is reused
echo "$BIN"
