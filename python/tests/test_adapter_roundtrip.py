"""The adapter format across languages: an adapter trained by `gsoft train` loads in Python and gives
the logits `gsoft predict` gives; one trained in Python merges with `gsoft merge` (and loads with
--adapter) and gives the logits Python gives. The model is a tiny BERT written here in plain
PyTorch with Hugging Face's module names, as a user's own model would be."""
import json
import math
import subprocess

import pytest
import torch
from torch import nn

import gsoft

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]
WORDS = ["the", "movie", "film", "plot", "acting", "was", "is", "very", "quite", "a", "and", "but", "good", "great",
         "fun", "bad", "awful", "boring", "long", "story"]
VOCAB = {w: i for i, w in enumerate(SPECIALS + WORDS)}
CONFIG = {"model_type": "bert", "architectures": ["BertForSequenceClassification"], "vocab_size": len(VOCAB),
          "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
          "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": 0, "hidden_act": "gelu",
          "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


class SelfAttention(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)

    def forward(self, x):
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(h // self.heads), -1)
        return (probs @ v).transpose(1, 2).reshape(b, t, h)


class DenseNorm(nn.Module):
    def __init__(self, i, o, eps):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(i, o), nn.LayerNorm(o, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.attention = nn.Module()
        self.attention.self = SelfAttention(h, c["num_attention_heads"])
        self.attention.output = DenseNorm(h, h, c["layer_norm_eps"])
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(h, c["intermediate_size"])
        self.output = DenseNorm(c["intermediate_size"], h, c["layer_norm_eps"])

    def forward(self, x):
        a = self.attention.output(self.attention.self(x), x)
        return self.output(nn.functional.gelu(self.intermediate.dense(a)), a)


class TinyBert(nn.Module):
    """BertForSequenceClassification's structure and names, dropout left out (eval only)."""

    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.bert = nn.Module()
        emb = self.bert.embeddings = nn.Module()
        emb.word_embeddings = nn.Embedding(c["vocab_size"], h)
        emb.position_embeddings = nn.Embedding(c["max_position_embeddings"], h)
        emb.token_type_embeddings = nn.Embedding(c["type_vocab_size"], h)
        emb.LayerNorm = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.bert.encoder = nn.Module()
        self.bert.encoder.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.bert.pooler = nn.Module()
        self.bert.pooler.dense = nn.Linear(h, h)
        self.classifier = nn.Linear(h, 2)

    def forward(self, ids):  # (B, T) without padding
        e = self.bert.embeddings
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        x = e.LayerNorm(e.word_embeddings(ids) + e.position_embeddings(pos) + e.token_type_embeddings(0 * ids))
        for layer in self.bert.encoder.layer:
            x = layer(x)
        return self.classifier(torch.tanh(self.bert.pooler.dense(x[:, 0])))


def tokenizer_json():
    added = [{"id": VOCAB[s], "content": s, "special": True, "normalized": False} for s in SPECIALS[:5]]
    return {"version": "1.0", "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", VOCAB["[CLS]"]],
                               "sep": ["[SEP]", VOCAB["[SEP]"]]},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "vocab": VOCAB}}


def ids_of(text):
    return torch.tensor([[VOCAB["[CLS]"]] + [VOCAB[w] for w in text.split()] + [VOCAB["[SEP]"]]])


def logits_of(model, texts):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(ids_of(t)) for t in texts])


def sentences(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        words = [WORDS[i] for i in torch.randint(len(WORDS), (int(torch.randint(3, 9, (1,), generator=g)),),
                                                 generator=g)]
        label = int(any(w in ("good", "great", "fun") for w in words))
        out.append({"text": " ".join(words), "label": str(label)})
    return out


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(cli, *args):
    r = subprocess.run([str(cli), "--threads", "1", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"gsoft {' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r


def predict(cli, tmp, model_dir, texts, adapter=None):
    inp, out = tmp / "predict_in.jsonl", tmp / "predict_out.jsonl"
    write_jsonl(inp, [{"text": t} for t in texts])
    run(cli, "predict", "--model", model_dir, "--input", inp, "--out", out,
        *(["--adapter", adapter] if adapter else []))
    return torch.tensor([json.loads(line)["logits"] for line in out.read_text().splitlines()])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny BERT checkpoint directory in Hugging Face layout, written from the Python model."""
    d = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(3)
    model = TinyBert(CONFIG)
    gsoft.write_safetensors(str(d / "model.safetensors"),
                            {k: v.contiguous() for k, v in model.state_dict().items()}, {"format": "pt"})
    (d / "config.json").write_text(json.dumps(CONFIG))
    (d / "tokenizer.json").write_text(json.dumps(tokenizer_json()))
    write_jsonl(d / "train.jsonl", sentences(64, 1))
    write_jsonl(d / "dev.jsonl", sentences(16, 2))
    return d


def base_model(tiny):
    model = TinyBert(CONFIG)
    tensors, _ = gsoft.read_safetensors(str(tiny / "model.safetensors"))
    model.load_state_dict(tensors)
    return model


def dev_texts(tiny):
    return [json.loads(line)["text"] for line in (tiny / "dev.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", [["gsoft", "--block-size", "8"], ["double_gsoft", "--block-size", "8"],
                                    ["lora", "--r", "4"]], ids=lambda m: m[0])
def test_an_adapter_trained_by_gsoft_train_loads_in_python_with_the_same_logits(cli, tiny, tmp_path, method):
    out = tmp_path / "run"
    run(cli, "train", "--model", tiny, "--train-file", tiny / "train.jsonl", "--eval-file", tiny / "dev.jsonl",
        "--method", *method, "--max-steps", 6, "--batch-size", 8, "--lr", "5e-3", "--out", out)
    model = base_model(tiny)
    texts = dev_texts(tiny)
    before = logits_of(model, texts)
    report = gsoft.load_adapter(model, out / "adapter")
    assert len(report.adapted) == 2 * 6  # every default target of both layers
    assert report.saved_modules == ["classifier"]
    ours = logits_of(model, texts)
    assert (ours - before).abs().max().item() > 1e-4  # the adapter changed the model
    theirs = predict(cli, tmp_path, tiny, texts, adapter=out / "adapter")
    assert (ours - theirs).abs().max().item() < 1e-5
    gsoft.merge_adapters(model)
    assert (logits_of(model, texts) - theirs).abs().max().item() < 1e-5


def test_an_adapter_trained_in_python_merges_with_gsoft_merge_with_the_same_logits(cli, tiny, tmp_path):
    model = base_model(tiny)
    report = gsoft.inject(model, {"method": "gsoft", "block_size": 8, "target_modules": ["query", "value"],
                                  "modules_to_save": ["classifier"]})
    assert [m.name for m in report.adapted] == [f"bert.encoder.layer.{i}.attention.self.{n}"
                                                for i in range(2) for n in ("query", "value")]
    rows = [json.loads(line) for line in (tiny / "train.jsonl").read_text().splitlines()]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for row in rows[:12]:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(ids_of(row["text"])), torch.tensor([int(row["label"])]))
        loss.backward()
        opt.step()
    texts = dev_texts(tiny)
    ours = logits_of(model, texts)
    gsoft.save_adapter(model, tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "GSOFT" and cfg["block_size"] == 8
    tensors, _ = gsoft.read_safetensors(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.gsoft_L" in tensors
    assert "base_model.model.classifier.weight" in tensors
    # The CLI merges it into the base checkpoint, and predicts from the merged model...
    run(cli, "merge", "--base", tiny, "--adapter", tmp_path / "adapter", "--out", tmp_path / "merged")
    merged = predict(cli, tmp_path, tmp_path / "merged", texts)
    assert (merged - ours).abs().max().item() < 1e-5
    # ... and from the base plus --adapter.
    assert (predict(cli, tmp_path, tiny, texts, adapter=tmp_path / "adapter") - ours).abs().max().item() < 1e-5
    # Python's own file-level merge is the same operation.
    info = gsoft.merge(tiny, tmp_path / "adapter", tmp_path / "merged_py.safetensors")
    assert len(info["merged_modules"]) == 4
    fresh = TinyBert(CONFIG)
    fresh.load_state_dict(gsoft.read_safetensors(str(tmp_path / "merged_py.safetensors"))[0])
    assert (logits_of(fresh, texts) - ours).abs().max().item() < 1e-5
    # A Python reload of the saved adapter reproduces the trained model.
    again = base_model(tiny)
    gsoft.load_adapter(again, tmp_path / "adapter")
    assert (logits_of(again, texts) - ours).abs().max().item() < 1e-6


def test_loading_refuses_tensors_the_model_lacks_and_wrong_shapes(tiny, tmp_path):
    model = base_model(tiny)
    gsoft.inject(model, {"method": "gsoft", "block_size": 8, "target_modules": ["query"]})
    gsoft.save_adapter(model, tmp_path / "a")
    small = TinyBert(dict(CONFIG, num_hidden_layers=1))
    with pytest.raises(ValueError, match="bert.encoder.layer.1.attention.self.query.gsoft_L"):
        gsoft.load_adapter(small, tmp_path / "a")
    other = base_model(tiny)
    gsoft.inject(other, {"method": "gsoft", "block_size": 4, "target_modules": ["query"]})
    with pytest.raises(ValueError, match="expected \\[8, 4, 4\\]"):
        gsoft.load_adapter(other, tmp_path / "a")
