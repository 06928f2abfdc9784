"""Train and write the bundled models in models/ (run once; the results are committed).

    .venv/bin/pip install -e ".[dev]"     # torch, for training only
    .venv/bin/python tools/train_models.py

seed_cnn: the TF tutorial's CNN completed as a classifier, trained on scikit-learn's bundled
digits (8x8 images upsampled to 32x32x3, no download). Version 1 and 2 differ in training
length and seed so hot reload can be tried. mlp: a 64-32-10 MLP on the flat 8x8 digits.
The weights are copied into engine.layers models (Keras layouts) and saved as version dirs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from engine.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D, Sequential

ROOT = Path(__file__).resolve().parent.parent / "models"


def digits_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test): 32x32x3 float32 in [0, 1], the fixed split."""
    d = load_digits()
    x = preprocess(d.images)
    return train_test_split(x, d.target.astype(np.int64), test_size=0.25, random_state=0)


def preprocess(images8x8: np.ndarray) -> np.ndarray:
    """8x8 digits (0..16) -> (N, 32, 32, 3) float32: scale to [0, 1], repeat each pixel 4x4."""
    x = np.asarray(images8x8, dtype=np.float32) / 16.0
    x = np.kron(x, np.ones((1, 4, 4), np.float32))
    return np.repeat(x[..., None], 3, axis=-1)


class TorchCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 32, 3)
        self.c2 = torch.nn.Conv2d(32, 64, 3)
        self.c3 = torch.nn.Conv2d(64, 64, 3)
        self.d1 = torch.nn.Linear(4 * 4 * 64, 64)
        self.d2 = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: NHWC
        x = x.permute(0, 3, 1, 2)
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
        x = torch.relu(self.c3(x))
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens NHWC
        return self.d2(torch.relu(self.d1(x)))


def train_cnn(epochs: int, seed: int) -> tuple[TorchCNN, float]:
    torch.manual_seed(seed)
    xtr, xte, ytr, yte = digits_images()
    net = TorchCNN()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
    return net, acc


def seed_cnn_layers() -> Sequential:
    return Sequential([
        Input((32, 32, 3)),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        Flatten(),
        Dense(64, activation="relu"),
        Dense(10),
    ])


def cnn_weights(net: TorchCNN) -> list[np.ndarray]:
    ws = []
    for conv in (net.c1, net.c2, net.c3):
        ws += [conv.weight.detach().numpy().transpose(2, 3, 1, 0), conv.bias.detach().numpy()]
    for lin in (net.d1, net.d2):
        ws += [lin.weight.detach().numpy().T, lin.bias.detach().numpy()]
    return [np.ascontiguousarray(w, dtype=np.float32) for w in ws]


def write_version(model: Sequential, path: Path, metadata: dict[str, object],
                  warmup: np.ndarray) -> None:
    if path.exists():
        shutil.rmtree(path)
    model.save(path, metadata=metadata)
    extra = path / "assets.extra"
    extra.mkdir()
    alias = "input_1"
    (extra / "warmup.json").write_text(json.dumps(
        {"requests": [{"inputs": {alias: warmup.round(4).tolist()}}]}))


def main() -> None:
    xtr, xte, ytr, yte = digits_images()
    report = {}
    for version, (epochs, seed) in {1: (4, 1), 2: (10, 2)}.items():
        net, torch_acc = train_cnn(epochs, seed)
        model = seed_cnn_layers()
        model.set_weights(cnn_weights(net))
        ours = model.predict(xte)
        acc = float((np.asarray(ours).argmax(-1) == yte).mean())
        assert abs(acc - torch_acc) < 1e-9 or acc >= torch_acc - 0.01, (acc, torch_acc)
        write_version(model, ROOT / "seed_cnn" / str(version),
                      {"test_accuracy": round(acc, 4), "epochs": epochs, "seed": seed,
                       "dataset": "sklearn digits, test_size=0.25, random_state=0"},
                      xte[:1])
        report[f"seed_cnn/{version}"] = acc
    sample = {"instances": xte[:1].round(4).tolist()}
    (ROOT / "seed_cnn" / "sample_request.json").write_text(json.dumps(sample))
    (ROOT / "seed_cnn" / "sample_label.txt").write_text(f"{int(yte[0])}\n")

    # MLP on the flat 8x8 digits, trained with torch the same way
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    mtr, mte, ytr2, yte2 = train_test_split(x, d.target, test_size=0.25, random_state=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(mtr), torch.from_numpy(ytr2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    mlp = Sequential([Input((64,)), Dense(32, activation="relu"), Dense(10, activation="softmax")])
    mlp.set_weights([net[0].weight.detach().numpy().T.copy(), net[0].bias.detach().numpy(),
                     net[2].weight.detach().numpy().T.copy(), net[2].bias.detach().numpy()])
    acc = float((np.asarray(mlp.predict(mte)).argmax(-1) == yte2).mean())
    path = ROOT / "mlp" / "1"
    if path.exists():
        shutil.rmtree(path)
    mlp.save(path, metadata={"test_accuracy": round(acc, 4), "dataset": "sklearn digits 8x8"})
    (ROOT / "mlp" / "sample_request.json").write_text(
        json.dumps({"instances": mte[:2].round(4).tolist()}))
    report["mlp/1"] = acc
    for k, v in report.items():
        print(f"{k}: test accuracy {v:.4f}")


if __name__ == "__main__":
    main()
