"""Known-item retrieval peers for search-eval (issue 20): raw tantivy and LanceDB on the set
that `search-eval` built (OUT/set/documents.parquet, OUT/set/queries.parquet: the same texts
and the same all-MiniLM-L6-v2 vectors jammi-db searches).

For each system and leg: MRR@10, recall@10 and QPS, one query at a time on one thread.
  * tantivy (PyPI `tantivy`): an in-memory index of `text`, analyzer = LanceDB's defaults
    (simple tokenizer, tokens over 40 bytes dropped, lowercase, ASCII folding, English stop
    words, English stemmer); queries as plain words (see plain_words), parsed over `text`.
  * LanceDB (PyPI `lancedb`): a local table with the text and vectors; full-text search
    with its native index (English stemming and stop words), vector search (exact, cosine;
    no ANN index at this size is needed for quality), and hybrid search with its
    RRFReranker.

Usage: python3 search_peers.py --set OUT/set --out peers.json
"""
import argparse
import json
import os
import sys
import tempfile
import time

import pyarrow.parquet as pq


def plain_words(text):
    """The query as search-eval gives it to jammi-db: everything but letters and digits
    becomes a space, and the query syntax's AND/OR/NOT/IN words are dropped, so no system
    reads operators into a synopsis ("GTK+ - files" must not exclude "files")."""
    plain = "".join(c if c.isalnum() else " " for c in text)
    return " ".join(w for w in plain.split() if w not in ("AND", "OR", "NOT", "IN"))


def score(results):
    reciprocal = found = 0.0
    for relevant, top in results:
        top = list(top)[:10]
        if relevant in top:
            reciprocal += 1.0 / (top.index(relevant) + 1)
            found += 1
    n = max(len(results), 1)
    return reciprocal / n, found / n


def timed(queries, search):
    search(queries[0])  # warm-up
    started = time.perf_counter()
    results = [(q["relevant_id"], search(q)) for q in queries]
    qps = len(queries) / (time.perf_counter() - started)
    mrr, recall = score(results)
    return {"mrr_at_10": mrr, "recall_at_10": recall, "qps": qps}


def run_tantivy(documents, queries):
    import tantivy

    analyzer = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, fast=True)
    builder.add_text_field("text", stored=False, tokenizer_name="en_jammi")
    schema = builder.build()
    index = tantivy.Index(schema)
    index.register_tokenizer("en_jammi", analyzer)
    writer = index.writer(heap_size=200_000_000, num_threads=1)
    for doc_id, text in zip(documents["id"], documents["text"]):
        writer.add_document(tantivy.Document(id=int(doc_id), text=text))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()

    def search(q):
        query, _errors = index.parse_query_lenient(q["text"], ["text"])
        hits = searcher.search(query, 10).hits
        return [searcher.doc(address)["id"][0] for _score, address in hits]

    version = getattr(tantivy, "__version__", "").split(",")[0].replace("tantivy", "").strip()
    return [{"system": f"tantivy {version} (Python)", "leg": "text (BM25)", **timed(queries, search)}]


def run_lancedb(documents_table, queries):
    import lancedb
    from lancedb.rerankers import RRFReranker

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(os.path.join(tmp, "lance"))
        table = db.create_table("docs", documents_table.select(["id", "text", "embedding"]).rename_columns(["id", "text", "vector"]))
        table.create_fts_index("text", use_tantivy=False, stem=True, remove_stop_words=True, language="English", with_position=False)
        version = lancedb.__version__

        def fts(q):
            return table.search(q["text"], query_type="fts").select(["id"]).limit(10).to_arrow()["id"].to_pylist()

        def vector(q):
            return table.search(q["embedding"], query_type="vector").distance_type("cosine").select(["id"]).limit(10).to_arrow()["id"].to_pylist()

        reranker = RRFReranker()

        def hybrid(q):
            return (
                table.search(query_type="hybrid")
                .vector(q["embedding"])
                .text(q["text"])
                .rerank(reranker)
                .select(["id"])
                .limit(10)
                .to_arrow()["id"]
                .to_pylist()
            )

        for leg, search in [("text (native FTS)", fts), ("vector (exact)", vector), ("hybrid (RRF reranker)", hybrid)]:
            rows.append({"system": f"LanceDB {version} (Python)", "leg": leg, **timed(queries, search)})
            print(f"lancedb {leg}: {rows[-1]}", file=sys.stderr)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # One thread for every system: LanceDB's compute pool reads these at start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("LANCE_CPU_THREADS", "1")
    documents_table = pq.read_table(os.path.join(args.set, "documents.parquet"))
    documents = {"id": documents_table["id"].to_pylist(), "text": documents_table["text"].to_pylist()}
    q = pq.read_table(os.path.join(args.set, "queries.parquet"))
    queries = [
        {"relevant_id": r, "text": plain_words(t), "embedding": e}
        for r, t, e in zip(q["relevant_id"].to_pylist(), q["text"].to_pylist(), q["embedding"].to_pylist())
    ]
    results = run_tantivy(documents, queries)
    print(f"tantivy: {results[-1]}", file=sys.stderr)
    results += run_lancedb(documents_table, queries)
    with open(args.out, "w") as f:
        json.dump({"results": results}, f, indent=2)


if __name__ == "__main__":
    main()
