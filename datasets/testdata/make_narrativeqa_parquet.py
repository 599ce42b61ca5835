"""Writes narrativeqa.parquet from narrativeqa.jsonl the way Hugging Face
`datasets` writes deepmind/narrativeqa's Parquet files, so the Go reader is
tested against the real writer's schema (Arrow three-level lists, nullable
fields). Run with `datasets` (or just pyarrow) installed; the committed file was
written with pyarrow 25.0.1:

    python3 datasets/testdata/make_narrativeqa_parquet.py
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
rows = [json.loads(line) for line in open(os.path.join(here, "narrativeqa.jsonl"))]
out = os.path.join(here, "narrativeqa.parquet")

try:
    import datasets as hf
except ImportError:
    hf = None

if hf is not None:
    # The features of deepmind/narrativeqa.
    seq = hf.Sequence(hf.Value("string"))
    features = hf.Features({
        "document": {
            "id": hf.Value("string"), "kind": hf.Value("string"), "url": hf.Value("string"),
            "file_size": hf.Value("int32"), "word_count": hf.Value("int32"),
            "start": hf.Value("string"), "end": hf.Value("string"),
            "summary": {"text": hf.Value("string"), "tokens": seq, "url": hf.Value("string"), "title": hf.Value("string")},
            "text": hf.Value("string"),
        },
        "question": {"text": hf.Value("string"), "tokens": seq},
        "answers": [{"text": hf.Value("string"), "tokens": seq}],
    })
    hf.Dataset.from_list(rows, features=features).to_parquet(out)
    print("wrote", out, "with datasets", hf.__version__)
else:
    import pyarrow as pa
    import pyarrow.parquet as pq
    strs = pa.list_(pa.string())
    schema = pa.schema([
        ("document", pa.struct([
            ("id", pa.string()), ("kind", pa.string()), ("url", pa.string()),
            ("file_size", pa.int32()), ("word_count", pa.int32()),
            ("start", pa.string()), ("end", pa.string()),
            ("summary", pa.struct([("text", pa.string()), ("tokens", strs), ("url", pa.string()), ("title", pa.string())])),
            ("text", pa.string()),
        ])),
        ("question", pa.struct([("text", pa.string()), ("tokens", strs)])),
        ("answers", pa.list_(pa.struct([("text", pa.string()), ("tokens", strs)]))),
    ])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out)
    print("wrote", out, "with pyarrow", pa.__version__, file=sys.stderr)
