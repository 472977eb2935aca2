#!/usr/bin/env python3
"""Writes all-MiniLM-L6-v2.json: reference vectors from sentence-transformers.

The Rust tests compare projsync-embed-local's vectors and token ids with these.
Run it again only when the inputs or the model change:

    python3 crates/embed-local/tests/reference/make_reference.py [MODEL_DIR]

MODEL_DIR defaults to the folder scripts/fetch-model.sh fills
(${PROJSYNC_CACHE_DIR:-~/.cache/projsync}/models/all-MiniLM-L6-v2). The script
makes a throwaway virtualenv (default /tmp/projsync-st-venv, or $ST_VENV) with
sentence-transformers and PyTorch from PyPI (several GB, the first time only)
and re-runs itself inside it. It needs no network beyond PyPI: the model is
read from MODEL_DIR, never from a model hub.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "all-MiniLM-L6-v2.json"
VENV = Path(os.environ.get("ST_VENV", "/tmp/projsync-st-venv"))
REQUIREMENTS = ["sentence-transformers==6.2.0", "torch==2.15.0"]


def default_model_dir() -> Path:
    cache = os.environ.get("PROJSYNC_CACHE_DIR") or os.path.join(
        os.environ["HOME"], ".cache", "projsync"
    )
    return Path(cache) / "models" / "all-MiniLM-L6-v2"


def long_input() -> str:
    # Well over 256 tokens, so sentence-transformers truncates it.
    lines = [
        f"fn step_{i}(state: &mut State) -> Result<u64> {{ state.total += {i} * {i}; Ok(state.total) }}"
        for i in range(40)
    ]
    return "\n".join(lines)


INPUTS = [
    "Embeddings map text to vectors, so that passages with similar meanings end up close together.",
    "fn main() {\n    let squares: Vec<u32> = (1..=10).map(|x| x * x).collect();\n"
    "    println!(\"{}\", squares.iter().sum::<u32>());\n}\n",
    "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "Ünïcödé façade — naïve café, 日本語のテキスト, Привет мир! 🚀🔥👍",
    "ok",
    "SELECT id, name FROM users WHERE created_at > now() - interval '7 days' ORDER BY name;",
    "# Sync\n\n- **prepare** resolves the branch\n- `import` writes entries\n\n> readers never see half a sync",
    long_input(),
]


def ensure_venv() -> None:
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        print(f"creating {VENV} (sentence-transformers and torch from PyPI; this takes a while)", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    check = subprocess.run(
        [str(python), "-c", "import sentence_transformers, torch"], capture_output=True
    )
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def main() -> None:
    ensure_venv()
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_dir()
    if not (model_dir / "config.json").exists():
        sys.exit(f"model not found at {model_dir}; run scripts/fetch-model.sh first")

    torch.set_num_threads(2)
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(INPUTS, batch_size=32, convert_to_numpy=True)
    tokenizer = model.tokenizer
    max_len = model.max_seq_length
    token_counts = [
        len(tokenizer(text, truncation=True, max_length=max_len)["input_ids"]) for text in INPUTS
    ]
    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "made_by": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "script": "crates/embed-local/tests/reference/make_reference.py",
        },
        "max_seq_length": max_len,
        "dimensions": int(vectors.shape[1]),
        "inputs": [
            {
                "text": text,
                # Ids as the model takes them: [CLS] … [SEP], truncated to max_seq_length.
                "token_ids": tokenizer(text, truncation=True, max_length=max_len)["input_ids"] if i < 2 else None,
                "model_tokens": count,
                "vector": [round(float(x), 6) for x in vector],
            }
            for i, (text, vector, count) in enumerate(zip(INPUTS, vectors, token_counts))
        ],
    }
    for item in reference["inputs"]:
        if item["token_ids"] is None:
            del item["token_ids"]
    # One line per list of numbers keeps the file short and its diffs readable.
    compact = {}
    for i, item in enumerate(reference["inputs"]):
        for key in ("token_ids", "vector"):
            if key in item:
                marker = f"@@{key}{i}@@"
                compact[f'"{marker}"'] = json.dumps(item[key], separators=(",", ":"))
                item[key] = marker
    text = json.dumps(reference, ensure_ascii=False, indent=1)
    for marker, value in compact.items():
        text = text.replace(marker, value)
    OUTPUT.write_text(text + "\n")
    print(f"wrote {OUTPUT} ({len(INPUTS)} inputs; model tokens {token_counts})", file=sys.stderr)


if __name__ == "__main__":
    main()
