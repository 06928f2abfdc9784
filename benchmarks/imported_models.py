"""Models written in PyTorch and exported to ONNX, for the importer's conformance tests
(tests/conformance/test_torch_onnx.py) and the importer rows of
``benchmarks/engine_vs_onnxruntime.py --imported``.

Unlike benchmarks/models.py (twin graphs built from numpy), these go through a user's path:
a torch module -> ``torch.onnx.export`` (the TorchScript exporter, opset 17, dynamic batch and
sequence axes) -> one .onnx file that onnxruntime and ``engine.load`` both read.

torch and transformers are imported inside the builders, so importing this module is cheap
(the benchmark lists the names below without paying for torch).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TorchExport", "EXPORTS", "IMPORTED_BENCHMARKS", "OPSET", "export", "resnet18",
           "lstm_classifier", "float_lstm_classifier", "small_bert"]

OPSET = 17
BERT_VOCAB = 1000
LSTM_VOCAB = 1000
LSTM_FEATURES = 32


# ------------------------------------------------------------------ torch modules
def _bn_stats(module: Any, seed: int) -> None:
    """Non-trivial BatchNorm parameters and running statistics, so an importer that drops or
    misplaces a BatchNorm gives a visibly wrong answer (fresh BN is nearly the identity)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))


def resnet18(classes: int = 1000, seed: int = 0) -> Any:
    """ResNet-18 written out by hand (torchvision's layout: 7x7/2 stem, 3x3/2 max pool,
    BasicBlock x [2, 2, 2, 2], global average pool, fc), in eval mode."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample: nn.Module | None = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            blocks: list[nn.Module] = []
            cin = 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*blocks)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.pool(self.layers(self.stem(x)))
            return self.fc(torch.flatten(h, 1))

    torch.manual_seed(seed)
    model = ResNet18()
    _bn_stats(model, seed + 1)
    return model.eval()


def gru_classifier(vocab: int = LSTM_VOCAB, embed: int = 32, hidden: int = 64,
                   classes: int = 10, seed: int = 0) -> Any:
    """Embedding -> 1-layer batch-first GRU -> Linear on the last step's output."""
    import torch
    from torch import nn

    class GRUClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, embed)
            self.gru = nn.GRU(embed, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.gru(self.embed(tokens))
            return self.fc(out[:, -1])

    torch.manual_seed(seed)
    return GRUClassifier().eval()


def lstm_classifier(vocab: int = LSTM_VOCAB, embed: int = 64, hidden: int = 128,
                    classes: int = 10, seed: int = 0) -> Any:
    """Embedding -> 2-layer batch-first LSTM -> Linear on the last step's output."""
    import torch
    from torch import nn

    class LSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embed(tokens))
            return self.fc(out[:, -1])

    torch.manual_seed(seed)
    return LSTMClassifier().eval()


def float_lstm_classifier(features: int = LSTM_FEATURES, hidden: int = 64, classes: int = 5,
                          seed: int = 0) -> Any:
    """Float sequences -> 1-layer batch-first LSTM -> Linear on the final hidden state h_n
    (the other way PyTorch users take the last step: the Y_h output, not a Slice of Y)."""
    import torch
    from torch import nn

    class FloatLSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(features, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, (h_n, _) = self.lstm(x)
            return self.fc(h_n[-1])

    torch.manual_seed(seed)
    return FloatLSTMClassifier().eval()


def small_bert(attn: str | None = None, token_types: bool = True, seed: int = 0) -> Any:
    """A 2-layer BERT from a random config (no download), returning (last_hidden_state,
    pooler_output). ``attn``: transformers' attention implementation; None is its default
    (sdpa in transformers 5), "eager" the explicit softmax(QK^T)V path. Without
    ``token_types`` the model takes (input_ids, attention_mask) and BERT slices its buffered
    all-zero token types to the sequence length: one more shape subgraph."""
    import torch
    from transformers import BertConfig, BertModel

    kw: dict[str, Any] = {} if attn is None else {"attn_implementation": attn}
    config = BertConfig(vocab_size=BERT_VOCAB, hidden_size=128, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=256,
                        max_position_embeddings=256, **kw)
    torch.manual_seed(seed)
    bert = BertModel(config).eval()

    # transformers 5's forward takes more positionals than the exporter's tuple should
    # fill; name the three inputs and return plain tensors.
    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, return_dict=True)
            return out.last_hidden_state, out.pooler_output

    class TwoInputEncoder(Encoder):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            return super().forward(input_ids, attention_mask)

    return (Encoder() if token_types else TwoInputEncoder()).eval()


# ------------------------------------------------------------------ feeds
def image_feeds(size: int) -> Callable[[int, int | None, int], dict[str, np.ndarray]]:
    def feeds(batch: int, seq: int | None = None, seed: int = 1) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"input": rng.standard_normal((batch, 3, size, size)).astype(np.float32)}
    return feeds


def token_feeds(batch: int, seq: int | None = None, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, LSTM_VOCAB, (batch, seq or 16), dtype=np.int64)}


def float_seq_feeds(batch: int, seq: int | None = None, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, seq or 16, LSTM_FEATURES)).astype(np.float32)}


def bert_feeds(batch: int, seq: int | None = None, seed: int = 1) -> dict[str, np.ndarray]:
    """Random tokens; row r is padded after ``seq - r * seq // (batch + 1)`` tokens (row 0 is
    full), so the mask's Where/Softmax path is exercised; two segments of token types."""
    seq = seq or 16
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, BERT_VOCAB, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for r in range(batch):
        mask[r, max(1, seq - r * seq // (batch + 1)):] = 0
    types = np.zeros((batch, seq), dtype=np.int64)
    types[:, seq // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def bert_feeds_2in(batch: int, seq: int | None = None, seed: int = 1) -> dict[str, np.ndarray]:
    feeds = bert_feeds(batch, seq, seed)
    del feeds["token_type_ids"]
    return feeds


# ------------------------------------------------------------------ export
@dataclass(frozen=True)
class TorchExport:
    """One torch model and how it is exported and fed."""

    name: str
    build: Callable[[], Any]
    feeds: Callable[[int, int | None, int], dict[str, np.ndarray]]
    outputs: tuple[str, ...]
    dynamic: Mapping[str, Mapping[int, str]]  # torch.onnx.export's dynamic_axes
    has_seq: bool = False
    doc: str = ""
    fold: bool = True  # torch.onnx.export's do_constant_folding (False keeps BatchNormalization)
    opset: int = OPSET


_BSEQ = {0: "batch", 1: "seq"}
_BERT_AXES = {"input_ids": _BSEQ, "attention_mask": _BSEQ, "token_type_ids": _BSEQ,
              "last_hidden_state": _BSEQ, "pooler_output": {0: "batch"}}
_BERT_OUT = ("last_hidden_state", "pooler_output")
EXPORTS: dict[str, TorchExport] = {
    "resnet18_64": TorchExport(
        "resnet18_64", resnet18, image_feeds(64), ("logits",),
        {"input": {0: "batch"}, "logits": {0: "batch"}}, doc="ResNet-18 on 64x64 images"),
    "resnet18_224": TorchExport(
        "resnet18_224", resnet18, image_feeds(224), ("logits",),
        {"input": {0: "batch"}, "logits": {0: "batch"}}, doc="ResNet-18 on 224x224 images"),
    # the exporter folds eval-mode BatchNorm into the convs unless constant folding is off
    "resnet18_bn_64": TorchExport(
        "resnet18_bn_64", resnet18, image_feeds(64), ("logits",),
        {"input": {0: "batch"}, "logits": {0: "batch"}}, fold=False,
        doc="ResNet-18 on 64x64 images, BatchNormalization nodes kept"),
    "lstm_tokens": TorchExport(
        "lstm_tokens", lstm_classifier, token_feeds, ("logits",),
        {"tokens": _BSEQ, "logits": {0: "batch"}}, has_seq=True,
        doc="Embedding -> 2-layer LSTM -> Linear"),
    "lstm_float": TorchExport(
        "lstm_float", float_lstm_classifier, float_seq_feeds, ("logits",),
        {"x": _BSEQ, "logits": {0: "batch"}}, has_seq=True, doc="LSTM -> Linear(h_n)"),
    "gru_tokens": TorchExport(
        "gru_tokens", gru_classifier, token_feeds, ("logits",),
        {"tokens": _BSEQ, "logits": {0: "batch"}}, has_seq=True,
        doc="Embedding -> GRU -> Linear"),
    "bert": TorchExport(
        "bert", small_bert, bert_feeds, _BERT_OUT, _BERT_AXES, has_seq=True,
        doc="2-layer BERT, transformers' default (sdpa) attention"),
    "bert_eager": TorchExport(
        "bert_eager", lambda: small_bert("eager"), bert_feeds, _BERT_OUT, _BERT_AXES,
        has_seq=True, doc="2-layer BERT, eager attention"),
    "bert_2in": TorchExport(
        "bert_2in", lambda: small_bert(token_types=False), bert_feeds_2in, _BERT_OUT,
        {k: v for k, v in _BERT_AXES.items() if k != "token_type_ids"}, has_seq=True,
        doc="2-layer BERT fed input_ids and attention_mask only"),
    # opset 14: LayerNormalization decomposed (ReduceMean, Sub, Pow, Sqrt, Div)
    "bert_opset14": TorchExport(
        "bert_opset14", small_bert, bert_feeds, _BERT_OUT, _BERT_AXES, has_seq=True,
        opset=14, doc="2-layer BERT at opset 14"),
    # opset 20: the Gelu op instead of Erf arithmetic
    "bert_opset20": TorchExport(
        "bert_opset20", small_bert, bert_feeds, _BERT_OUT, _BERT_AXES, has_seq=True,
        opset=20, doc="2-layer BERT at opset 20"),
}

# importer rows of benchmarks/engine_vs_onnxruntime.py: name -> (export, seq, batch sizes)
IMPORTED_BENCHMARKS: dict[str, tuple[str, int | None, tuple[int, ...]]] = {
    "torch_resnet18": ("resnet18_224", None, (1, 8)),
    "torch_bert": ("bert", 128, (1, 8)),
}


def export(spec: TorchExport, directory: Path, *, verify: bool = True) -> Path:
    """Export ``spec`` to ``directory/<name>.onnx`` (kept if already there) with the
    TorchScript exporter and return the path. ``verify``: check onnxruntime against torch
    on the export's own example, so a failure later is the importer's, not the export's."""
    import torch

    path = Path(directory) / f"{spec.name}.onnx"
    if path.is_file():
        return path
    model = spec.build()
    example = spec.feeds(2, 9 if spec.has_seq else None, 0)
    args = tuple(torch.from_numpy(v) for v in example.values())
    tmp = path.with_suffix(".onnx.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings, by the dozen
        torch.onnx.export(model, args, str(tmp), input_names=list(example),
                          output_names=list(spec.outputs),
                          dynamic_axes={k: dict(v) for k, v in spec.dynamic.items()},
                          opset_version=spec.opset, do_constant_folding=spec.fold, dynamo=False)
    if verify:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        feeds = spec.feeds(3, 11 if spec.has_seq else None, 5)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(v) for v in feeds.values()))
        refs = ref if isinstance(ref, tuple) else (ref,)
        for name, got, want in zip(spec.outputs, sess.run(None, feeds), refs, strict=True):
            want = want.numpy()
            err = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-6)
            if err > 1e-4:
                raise AssertionError(f"{spec.name}: onnxruntime's {name} differs from torch's "
                                     f"by {err:.3g} relative after export; expected <= 1e-4")
    tmp.replace(path)
    return path
