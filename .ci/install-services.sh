#!/usr/bin/env bash
# Install and start what the service tests need, idempotently, as root (called by .ci/run):
#   - Debian packages: redis-server, postgresql, docker.io, chromium + chromium-driver (dashboard browser
#     test), a C/C++ toolchain + cmake (for llama.cpp);
#     the hardware benchmarks' tools: 7zip (7zz b), fio, likwid (likwid-bench cross-checks the STREAM kernel,
#     which gcc compiles with OpenMP on first use);
#     system services are NOT enabled or started (the tests start their own servers on free ports);
#   - a Docker engine: if none answers, dockerd --storage-driver=vfs in the background (log: /tmp/dockerd.log);
#   - the gguf package (writes the tiny test model) and llama.cpp's llama-server/llama-bench, built once
#     from the llama-cpp-python sdist and cached in ${HWBENCH_CACHE:-$HOME/.cache/hwbench}/llama.cpp/.
# Each step prints its duration. A failing step is reported and the script goes on, so the tests that do
# not need that piece still run; with HWBENCH_FAIL_ON_UNAVAILABLE=1 the tests that need it then fail.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
step() {  # step <name> <command...>: run, time, report
  local name="$1"; shift
  local t0=$SECONDS
  echo "[install-services] $name ..."
  if "$@"; then
    echo "[install-services] $name ok ($((SECONDS - t0))s)"
  else
    echo "[install-services] $name FAILED ($((SECONDS - t0))s)" >&2
    status=1
  fi
}

need_pkgs() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++ make)
  command -v ldd >/dev/null || missing+=(libc-bin)
  command -v runuser >/dev/null || missing+=(util-linux)
  { command -v chromium && command -v chromedriver; } >/dev/null || missing+=(chromium chromium-driver)
  command -v 7zz >/dev/null || missing+=(7zip)
  command -v fio >/dev/null || missing+=(fio)
  command -v likwid-bench >/dev/null || missing+=(likwid)
  command -v gcc >/dev/null || missing+=(gcc)
  echo "${missing[@]:-}"
}

apt_install() {
  local pkgs
  pkgs="$(need_pkgs)"
  if [ -z "$pkgs" ]; then echo "  all packages present"; return 0; fi
  echo "  installing: $pkgs"
  # policy-rc.d exit 101: packages must not start (or enable) their system services here.
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/tmp/apt-install.log 2>&1
  local rc=$?
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc -ne 0 ] && tail -n 30 /tmp/apt-install.log >&2
  return $rc
}

start_docker() {
  if docker info >/dev/null 2>&1; then echo "  a Docker engine already answers"; return 0; fi
  command -v dockerd >/dev/null || { echo "  dockerd not installed" >&2; return 1; }
  if ! pgrep -x dockerd >/dev/null; then
    # vfs: works inside containers and on any filesystem (no overlay mounts needed); setsid so the
    # engine outlives this script and is not hit by a Ctrl-C aimed at it.
    setsid nohup dockerd --storage-driver=vfs >/tmp/dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "  dockerd did not answer within 60s; last lines of /tmp/dockerd.log:" >&2
  tail -n 20 /tmp/dockerd.log >&2
  return 1
}

pip_gguf() {
  python3 -c "import gguf" 2>/dev/null && return 0
  python3 -m pip install -q gguf
}

step "apt packages" apt_install
step "docker engine" start_docker
step "python gguf" pip_gguf
step "llama.cpp build" bash scripts/build_llama_cpp.sh
exit $status
