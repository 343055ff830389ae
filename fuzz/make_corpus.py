#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<reader>/: small valid files, in the input layout that
fuzz/readers.cpp documents for each reader (an option byte first where the reader has options).
Run from anywhere; it replaces the generated files and leaves others alone. Python's standard
library only."""
import gzip
import json
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))


def put(reader, name, data):
    d = os.path.join(ROOT, "corpus", reader)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


# ---- safetensors
put("safetensors", "f32_matrix", safetensors({"w": ("F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6))},
                                             {"format": "pt"}))
put("safetensors", "dtypes", safetensors({
    "a": ("F16", [2], b"\x00\x3c\x00\x40"), "b": ("BF16", [1], b"\x80\x3f"), "c": ("I64", [], struct.pack("<q", -7)),
    "d": ("BOOL", [3], b"\x01\x00\x01"), "e": ("U8", [0, 4], b""), "f": ("F64", [1, 1], struct.pack("<d", 0.5)),
    "g": ("I32", [2], struct.pack("<2i", 1, 2)), "h": ("I16", [1], b"\x01\x00"), "i": ("I8", [1], b"\xff")}))
put("safetensors", "empty_header", safetensors({}))

# ---- checkpoint_index (the shard a.safetensors holds x and y)
put("checkpoint_index", "both", json.dumps({"metadata": {"total_size": 9}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors"}}))
put("checkpoint_index", "plain", '{"weight_map":{"y":"a.safetensors","x":"a.safetensors"}}')

# ---- lipconvnet: lipconvnet.json for fuzz/data/lipconvnet_soc_d5_c2.safetensors, which came from
# gsoft lipconv train --dataset fashion-mnist --conv soc --depth 5 --init-channels 2 --epochs 1 \
#   --train-subset 64 --test-subset 16 --batch-size 32 --no-resume --out DIR
arch = {"activation": "maxmin-permuted", "conv": "soc", "depth": 5, "eval_terms": 12, "groups1": 4, "groups2": 0,
        "in_channels": 1, "init_channels": 2, "input_size": 32, "layout": "authors", "num_classes": 10, "paired": True,
        "train_terms": 5}
put("lipconvnet", "as_written", json.dumps({"architecture": arch, "dataset": "fashion-mnist", "mean": [0.286], "std": [0.353]}, indent=2))
put("lipconvnet", "defaults_omitted", json.dumps({"architecture": {"conv": "soc", "depth": 5, "in_channels": 1, "init_channels": 2},
                                                  "mean": [0.5], "std": [0.25]}))

# ---- adapter_config: PEFT layout, one per method
targets = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
common = {"target_modules": targets, "exclude_modules": [], "modules_to_save": ["classifier", "bert.pooler"],
          "bias": "none", "init_weights": True, "inference_mode": True}
put("adapter_config", "gsoft", json.dumps(dict(common, peft_type="GSOFT", block_size=8, nblocks=0, parametrization="cayley",
                                               num_cayley_neumann_terms=5, layout="official", scale=True, double_gsoft=False), indent=1))
put("adapter_config", "double_gsoft", json.dumps(dict(common, peft_type="GSOFT", block_size=16, double_gsoft=True)))
put("adapter_config", "oft", json.dumps(dict(common, peft_type="OFT", r=0, oft_block_size=8, coft=False, eps=6e-5,
                                             block_share=False)))
put("adapter_config", "boft", json.dumps(dict(common, peft_type="BOFT", boft_block_size=4, boft_block_num=0,
                                              boft_n_butterfly_factor=2, boft_dropout=0.0)))
put("adapter_config", "lora", json.dumps(dict(common, peft_type="LORA", r=8, lora_alpha=16, lora_dropout=0.0)))
put("adapter_config", "minimal", '{"peft_type":"LORA","target_modules":"query|value"}')

# ---- encoder_config
put("encoder_config", "shipped_bert", open(os.path.join(ROOT, "..", "models", "polarity-bert", "config.json")).read())
put("encoder_config", "roberta", json.dumps({"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768,
                                             "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                                             "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
                                             "layer_norm_eps": 1e-5, "architectures": ["RobertaForSequenceClassification"],
                                             "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}))
put("encoder_config", "regression", json.dumps({"model_type": "bert", "hidden_size": 64, "num_attention_heads": 2,
                                                "num_labels": 1, "problem_type": "regression"}))

# ---- tokenizer_json: small WordPiece and BPE files with every supported component
wp_vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "##ing",
                                        "the", ",", "!", "a", "##b", "cafe", "na", "##ive", "東", "京"])}
wordpiece = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "[PAD]", "special": True}, {"id": 4, "content": "[MASK]", "special": True}],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": None, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                  {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                       "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                          "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
    "decoder": None,
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100, "vocab": wp_vocab}}
put("tokenizer_json", "wordpiece", json.dumps(wordpiece, ensure_ascii=False))
wp2 = dict(wordpiece, normalizer={"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "StripAccents"}]},
           pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}]},
           post_processor={"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]})
put("tokenizer_json", "wordpiece_sequence", json.dumps(wp2, ensure_ascii=False))
byte_chars = "ĠhelowrdĊ"
bpe_vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "h": 4, "e": 5, "l": 6, "o": 7, "w": 8, "r": 9, "d": 10, "Ġ": 11,
             "he": 12, "ll": 13, "llo": 14, "hello": 15, "Ġw": 16, "or": 17, "Ġwor": 18, "Ġworld": 19, "!": 20}
bpe = {"version": "1.0", "added_tokens": [{"id": 0, "content": "<s>", "special": True}, {"id": 2, "content": "</s>", "special": True}],
       "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True,
                          "add_prefix_space": False},
       "decoder": {"type": "ByteLevel"},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                 "end_of_word_suffix": "", "fuse_unk": False, "vocab": bpe_vocab,
                 "merges": ["h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"]}}
bpe["model"]["vocab"].update({"Ġworl": 21})
put("tokenizer_json", "bpe_bytelevel", json.dumps(bpe, ensure_ascii=False))
bpe2 = json.loads(json.dumps(bpe))
bpe2["model"]["merges"] = [["h", "e"], ["l", "l"]]
bpe2["normalizer"] = {"type": "NFKC"}
bpe2["pre_tokenizer"] = {"type": "Whitespace"}
bpe2["post_processor"] = None
bpe2["model"]["unk_token"] = "<unk>"
put("tokenizer_json", "bpe_whitespace", json.dumps(bpe2, ensure_ascii=False))

# ---- tokenize: texts (a newline makes a pair)
put("tokenize", "plain", "The movie was surprisingly good, and I'd watch it again!")
put("tokenize", "pair", "a gripping, well-acted thriller\nit is boring and far too long")
put("tokenize", "unicode", "Naïve café — “quoted” 東京 😀 ß ﬁ \u00a0 \u200b tab\there")
put("tokenize", "long_word", "supercalifragilisticexpialidocious" * 4 + " ok")

# ---- table: option byte (readers.cpp run_table), then the file
put("table", "csv", b"\x00" + b'text,label\n"a fine, funny film",1\nboring,0\n"say ""hi""",1\n')
put("table", "tsv", b"\x01" + b"sentence\tlabel\nit works\t1\nit does not\t0\n".replace(b"sentence", b"text"))
put("table", "jsonl", b"\x02" + b'{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n')
put("table", "corpus", b"\x03" + b"First paragraph, line one.\nline two.\n\nSecond paragraph.\n")
put("table", "noheader_pair", b"\x24" + b"premise one,1,hypothesis one\npremise two,0,hypothesis two\n")
put("table", "regression", b"\x40" + b"text,label\nfine,3.5\npoor,1.25\n")
put("table", "unlabelled", b"\x80" + b"text\nwhat do you think\n")
put("table", "bom_skip_bad", b"\x10" + b"\xef\xbb\xbftext,label\nok,1\nbad row without label\nfine,0\n")

# ---- idx: option byte, 4-byte length of the images file, images (n x 3 x 3), labels
def idx(n, side, labels):
    images = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, side, side) + bytes(range(n * side * side))
    lab = bytes([0, 0, 8, 1]) + struct.pack(">I", n) + bytes(labels)
    return images, lab
im, lb = idx(2, 3, [3, 9])
put("idx", "plain", b"\x00" + struct.pack("<I", len(im)) + im + lb)
gz = gzip.compress(im, mtime=0)
put("idx", "gzip", b"\x01" + struct.pack("<I", len(gz)) + gz + lb)
im, lb = idx(1, 1, [0])
put("idx", "one_pixel", b"\x00" + struct.pack("<I", len(im)) + im + lb)

# ---- cifar: option byte (bit 0: CIFAR-100), then records
put("cifar", "cifar10", b"\x00" + bytes([7]) + bytes(3072) + bytes([0]) + bytes(range(256)) * 12)
put("cifar", "cifar100", b"\x01" + bytes([3, 99]) + bytes(3072))

# ---- word_vectors
put("word_vectors", "glove", "the 0.1 -0.2 0.3\nmovie 1 2 3e-2\n, 0 0 0\n")
put("word_vectors", "word2vec_header", "2 4\ngood 0.5 0.25 -1 1\nbad -0.5 -0.25 1 -1\n")
put("word_vectors", "wink", json.dumps({"precision": 4, "dimensions": 3, "unit": False,
                                        "vectors": {"the": [0.1, 0.2, 0.3, 0.9], "fine": [1, 2, 3, 0.5], "caf\u00e9": [0, 0, 1, 0]}}))
