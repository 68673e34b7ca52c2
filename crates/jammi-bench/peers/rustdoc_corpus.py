#!/usr/bin/env python3
"""A second real embedding corpus, in the layout of the shared debian-packages set.

The shared set is Debian package descriptions. This one is another kind of text: the
documentation comments (`///` and `//!` paragraphs) of the Rust crates in Cargo's local
registry cache, embedded with the same model (all-MiniLM-L6-v2, fp32 ONNX export of
embed_peers.py, checked against the shared set's vectors before use), truncated to 128
tokens. Its `section` is the crate family (the crate name up to its first `-` or `_`:
`datafusion`, `arrow`, `tokio`, ...), so filtered searches see a spread of selectivities.

Writes, under --out: packages.parquet (id, package, section, description),
embeddings.parquet (id, package, embedding), queries.parquet, ground_truth.parquet and
filtered_ground_truth.parquet (exact top-100 cosine neighbours, plain and within the
query's section), as vector-bench and vector_peers.py read them. Deterministic for a given
registry cache: files in sorted order, texts deduplicated, the sample and the query split
drawn with fixed seeds.

Usage (run_vectors_corpus.sh sets it up):
    python3 rustdoc_corpus.py --model-dir DIR --out DIR [--rows 60000] [--queries 1000]
"""

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embed_peers  # noqa: E402

DIMS = 384
TOP = 100
DOC = re.compile(r"^\s*//[/!]\s?(.*)$")


def crate_of(directory: str) -> str:
    """`tokio-util-0.7.11` → `tokio-util`."""
    return re.sub(r"-\d+(\.\d+)*([-+].*)?$", "", directory)


def family_of(crate: str) -> str:
    return re.split(r"[-_]", crate, maxsplit=1)[0]


def paragraphs(path: Path):
    """Doc-comment paragraphs of one file, as single lines of prose."""
    current: list[str] = []
    in_code = False
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines + [""]:
        m = DOC.match(line)
        text = m.group(1).strip() if m else None
        if text is not None and text.startswith("```"):
            in_code = not in_code
            current = []
            continue
        if text and not in_code and not text.startswith(("#", "|", "-", "*", "[")):
            current.append(text)
            continue
        if current:
            yield " ".join(current)
        current = []
        if text is None:
            in_code = False


def collect(registry: Path, rows: int, queries: int):
    seen = set()
    texts, crates = [], []
    for crate_dir in sorted(p for p in registry.glob("*/*") if p.is_dir()):
        crate = crate_of(crate_dir.name)
        for path in sorted(crate_dir.rglob("*.rs")):
            for text in paragraphs(path):
                if 60 <= len(text) <= 600 and text not in seen:
                    seen.add(text)
                    texts.append(text)
                    crates.append(crate)
    want = rows + queries
    if len(texts) < want:
        sys.exit(f"only {len(texts)} doc paragraphs in {registry}; asked for {want}")
    pick = np.sort(np.random.default_rng(7).choice(len(texts), want, replace=False))
    return [texts[i] for i in pick], [crates[i] for i in pick]


def exact_top(base: np.ndarray, query: np.ndarray, allowed: np.ndarray | None):
    """Top-100 ids and cosine distances (vectors are unit length), ties by id."""
    distance = 1.0 - base @ query
    ids = np.arange(len(base)) if allowed is None else np.flatnonzero(allowed)
    d = distance[ids]
    order = np.lexsort((ids, d))[:TOP]
    found, dist = ids[order].astype(np.int64), d[order].astype(np.float32)
    pad = TOP - len(found)
    return np.pad(found, (0, pad), constant_values=-1), np.pad(dist, (0, pad), constant_values=np.nan)


def fixed(values: np.ndarray, width: int, dtype) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=dtype), width)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--registry", type=Path, default=Path.home() / ".cargo/registry/src")
    p.add_argument("--shared", type=Path, default=embed_peers.DEFAULT_DATASET, help="the shared set, to check the model export")
    p.add_argument("--rows", type=int, default=60000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()

    texts, crates = collect(a.registry, a.rows, a.queries)
    sections = [family_of(c) for c in crates]
    tokenizer = Tokenizer.from_file(str(a.model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=embed_peers.MAX_TOKENS)
    a.out.mkdir(parents=True, exist_ok=True)
    model = a.out / "minilm-fp32.onnx"
    embed_peers.build_onnx(a.model_dir, model)
    session = embed_peers.session_for(model, embed_peers.NCPU)
    check_texts = embed_peers.load_texts(a.shared, 200)
    stored = pq.read_table(a.shared / "embeddings.parquet", columns=["embedding"]).column("embedding").combine_chunks()
    stored = stored.values.to_numpy().reshape(-1, DIMS)[:200]
    cosine = float(np.mean(np.sum(embed_peers.embed_all(session, tokenizer, check_texts, True) * stored, axis=1)))
    if cosine < 0.99:
        sys.exit(f"the model export disagrees with the shared set's vectors (mean cosine {cosine:.4f})")
    vectors = embed_peers.embed_all(session, tokenizer, texts, True).astype(np.float32)
    model.unlink()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    query_rows = np.sort(np.random.default_rng(42).choice(len(texts), a.queries, replace=False))
    is_query = np.zeros(len(texts), dtype=bool)
    is_query[query_rows] = True
    base_rows = np.flatnonzero(~is_query)
    base, base_sections = vectors[base_rows], np.array([sections[i] for i in base_rows])
    n = len(base_rows)
    ids = pa.array(np.arange(n, dtype=np.int64))
    package = pa.array([crates[i] for i in base_rows])
    pq.write_table(
        pa.table({"id": ids, "package": package, "section": pa.array(base_sections.tolist()), "description": pa.array([texts[i] for i in base_rows])}),
        a.out / "packages.parquet",
    )
    pq.write_table(pa.table({"id": ids, "package": package, "embedding": fixed(base, DIMS, pa.float32())}), a.out / "embeddings.parquet")

    q_sections = [sections[i] for i in query_rows]
    pq.write_table(
        pa.table({
            "query_id": pa.array(np.arange(a.queries, dtype=np.int64)),
            "package": pa.array([crates[i] for i in query_rows]),
            "section": pa.array(q_sections),
            "description": pa.array([texts[i] for i in query_rows]),
            "embedding": fixed(vectors[query_rows], DIMS, pa.float32()),
        }),
        a.out / "queries.parquet",
    )
    plain_ids, plain_d, filt_ids, filt_d, selectivity = [], [], [], [], []
    for qi, row in enumerate(query_rows):
        found, dist = exact_top(base, vectors[row], None)
        plain_ids.append(found)
        plain_d.append(dist)
        allowed = base_sections == q_sections[qi]
        found, dist = exact_top(base, vectors[row], allowed)
        filt_ids.append(found)
        filt_d.append(dist)
        selectivity.append(float(allowed.mean()))
    qid = pa.array(np.arange(a.queries, dtype=np.int64))
    pq.write_table(
        pa.table({"query_id": qid, "neighbors": fixed(np.stack(plain_ids), TOP, pa.int64()), "distances": fixed(np.stack(plain_d), TOP, pa.float32())}),
        a.out / "ground_truth.parquet",
    )
    pq.write_table(
        pa.table({
            "query_id": qid,
            "section": pa.array(q_sections),
            "selectivity": pa.array(selectivity),
            "neighbors": fixed(np.stack(filt_ids), TOP, pa.int64()),
            "distances": fixed(np.stack(filt_d), TOP, pa.float32()),
        }),
        a.out / "filtered_ground_truth.parquet",
    )
    families = len(set(base_sections.tolist()))
    print(f"{n} base rows, {a.queries} queries, {families} sections, median query-section selectivity {np.median(selectivity):.4f}; export check cosine {cosine:.5f}", file=sys.stderr)


if __name__ == "__main__":
    main()
