#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible server (llama-server) for the tests, from the llama.cpp that the PyPI
# package llama-cpp-python vendors (the sdist comes from PyPI; nothing else is downloaded). The binary is
# kept in .tools/bin and reused: a second run does nothing. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
BIN=.tools/bin/llama-server
if [[ -x $BIN ]] && [[ $(cat .tools/llama-server.version 2>/dev/null) == "$VERSION" ]]; then
  exit 0
fi
mkdir -p .tools/src .tools/bin
SDIST=.tools/src/llama_cpp_python-$VERSION.tar.gz
if [[ ! -f $SDIST ]]; then
  echo "setup: downloading llama-cpp-python $VERSION (source) from PyPI" >&2
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==$VERSION" -d .tools/src 2>&1 | grep -v "^WARNING: Location" || true
fi
rm -rf ".tools/src/llama_cpp_python-$VERSION" .tools/build
tar -xzf "$SDIST" -C .tools/src
echo "setup: building llama-server (about 5 minutes)" >&2
# Portable x86-64 with AVX2 (not -march=native): the binary may move between machines of one kind.
cmake -S ".tools/src/llama_cpp_python-$VERSION/vendor/llama.cpp" -B .tools/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build .tools/build --target llama-server -j "$(nproc)" >/dev/null
cp .tools/build/bin/llama-server "$BIN"
echo "$VERSION" > .tools/llama-server.version
rm -rf .tools/build ".tools/src/llama_cpp_python-$VERSION"
"$BIN" --version >/dev/null 2>&1 || { echo "setup: the llama-server build does not run" >&2; exit 1; }
