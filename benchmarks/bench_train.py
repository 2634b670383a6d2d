"""Time one training epoch of `retrain.train.fit` against the DataLoader(TensorDataset) loop.

All sides train the same network (`retrain.model.build_network`, same initial weights) on the same 1M synthetic
rows for one epoch with the same torch thread count (`threads`), and report validation ROC AUC on the same
held-out days. Ours uses the settings' defaults (`model.batch_size` 512, fused Adam, learning rate, weight decay).
- fair baseline: `DataLoader(TensorDataset(...), batch_size=<ours>, shuffle=True)` with the same fused Adam;
  the target (<= 0.3, same ROC AUC +-0.01) is judged on this pair;
- common idiom: the same loop with batch 256 and plain Adam (context only).
The three alternate within each repeat; medians. A second part trains one epoch on 10M rows in a subprocess
and reports its peak RSS.

Run from the repository root: python -m benchmarks.bench_train
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROWS_PER_DAY = 100_000
REPO = Path(__file__).resolve().parents[1]
QUICK = {"n_rows": 200_000, "big_rows": 0, "repeats": 1}


def _arrays(n_rows: int, val_rows: int, seed: int):
    """Encoded (numeric, codes, label) arrays for training and validation days from `retrain.synth`.

    Days are generated and encoded one at a time so that only the encoded arrays stay in memory.
    """
    import numpy as np

    from retrain import model, synth
    from retrain.config import DataSpec

    spec_data = DataSpec()
    per_day = min(ROWS_PER_DAY, n_rows)
    train_days = -(-n_rows // per_day)
    val_days = -(-val_rows // per_day)
    synth_spec = synth.SynthSpec(days=train_days + val_days, rows_per_day=per_day, seed=seed)
    net_spec = None
    parts: list[tuple] = []
    for day in range(train_days + val_days):
        frame = synth.generate_day(synth_spec, day)
        if net_spec is None:
            net_spec = model.build_spec(frame, list(spec_data.numeric), list(spec_data.categorical), 64)
        num, codes = model.encode(frame, net_spec)
        parts.append((num, codes, frame[spec_data.label].to_numpy(np.int64)))
    train = tuple(np.concatenate([p[i] for p in parts[:train_days]])[:n_rows] for i in range(3))
    val = tuple(np.concatenate([p[i] for p in parts[train_days:]])[:val_rows] for i in range(3))
    return net_spec, train, val


def _network(net_spec, train, seed: int):
    """The project's network with standardisation learnt from the training rows, seeded weights."""
    import torch

    from retrain.model import build_network

    mean = train[0].mean(axis=0)
    std = train[0].std(axis=0)
    std[std == 0] = 1.0
    torch.manual_seed(seed)
    return build_network(net_spec, mean, std)


def _val_auc(net, val) -> float:
    from retrain.metrics import roc_auc
    from retrain.model import predict_proba

    return float(roc_auc(val[2], predict_proba(net, val[0], val[1])))


def _ours(net_spec, train, val, seed: int) -> tuple[float, float]:
    """Seconds for one epoch of retrain.train.fit (default batch size) and the validation ROC AUC."""
    from retrain.config import ModelSpec
    from retrain.train import fit

    defaults = ModelSpec()
    net = _network(net_spec, train, seed)
    start = time.perf_counter()
    fit(
        net,
        train,
        val,
        epochs=1,
        batch_size=defaults.batch_size,
        learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay,
        seed=seed,
    )
    return time.perf_counter() - start, _val_auc(net, val)


def _baseline(net_spec, train, val, seed: int, batch_size: int, fused: bool) -> tuple[float, float]:
    """Seconds for one epoch of the DataLoader(TensorDataset, shuffle=True) loop, and its AUC."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from retrain.config import ModelSpec

    defaults = ModelSpec()
    net = _network(net_spec, train, seed)
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(*(torch.from_numpy(a) for a in train)), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay, fused=fused
    )
    start = time.perf_counter()
    net.train()
    for num, codes, y in loader:
        loss = F.cross_entropy(net(num, codes), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    net.eval()
    return seconds, _val_auc(net, val)


def big_child(n_rows: int) -> None:
    """In its own process: build n_rows of data, train one epoch, print seconds and peak RSS as JSON."""
    import resource

    from retrain.config import ModelSpec
    from retrain.train import fit

    defaults = ModelSpec()
    start = time.perf_counter()
    net_spec, train, val = _arrays(n_rows, 200_000, seed=11)
    data_s = time.perf_counter() - start
    net = _network(net_spec, train, 0)
    start = time.perf_counter()
    fit(
        net,
        train,
        val,
        epochs=1,
        batch_size=defaults.batch_size,
        learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay,
        seed=0,
    )
    train_s = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {"data_s": data_s, "train_s": train_s, "peak_rss_gib": peak_kib / 2**20, "val_roc_auc": _val_auc(net, val)}
        )
    )


def _big(n_rows: int, threads: int) -> dict:
    """Run big_child in a fresh interpreter so its peak RSS is its own."""
    code = (
        f"import torch; torch.set_num_threads({threads}); "
        f"from benchmarks.bench_train import big_child; big_child({n_rows})"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n_rows: int = 1_000_000, big_rows: int = 10_000_000, repeats: int = 3, seed: int = 0, threads: int = 1) -> dict:
    """Benchmark result as a dict for benchmarks/run_all.py (median seconds of `repeats` alternating runs).

    `threads`: torch intra-op threads for every side (1 by default: this 11-input MLP gains nothing from a
    second thread, and on a shared 2-core machine a second thread's spin-waits made epochs 5-20x slower).
    """
    import statistics

    import torch

    from retrain.config import ModelSpec

    batch = ModelSpec().batch_size
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net_spec, train, val = _arrays(n_rows, 200_000, seed=seed)
        sides = {
            "ours": lambda data: _ours(net_spec, data, val, seed),
            "fair": lambda data: _baseline(net_spec, data, val, seed, batch, fused=True),
            "idiom": lambda data: _baseline(net_spec, data, val, seed, 256, fused=False),
        }
        # Untimed warm-up on a slice so no side pays for first calls into torch's kernels.
        warm = tuple(a[:20_000] for a in train)
        for side in sides.values():
            side(warm)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        names = list(sides)
        for i in range(repeats):  # alternating, order rotated, so background load hits every side alike
            for name in names[i % 3 :] + names[: i % 3]:
                results[name].append(sides[name](train))
    finally:
        torch.set_num_threads(before)
    seconds = {name: statistics.median(s for s, _ in r) for name, r in results.items()}
    auc = {name: r[0][1] for name, r in results.items()}
    big = _big(big_rows, threads) if big_rows else {}
    out = {
        "name": f"train_epoch_{n_rows}",
        "n_rows": n_rows,
        "repeats": repeats,
        "threads": threads,
        "batch_size": batch,
        "ours_s": round(seconds["ours"], 3),
        "baseline_s": round(seconds["fair"], 3),
        "ratio": round(seconds["ours"] / seconds["fair"], 3),
        "target": "<= 0.3 (fair: same batch size, fused Adam, threads)",
        "idiom_baseline_s": round(seconds["idiom"], 3),
        "idiom_ratio": round(seconds["ours"] / seconds["idiom"], 3),
        "all_s": {name: [round(s, 3) for s, _ in r] for name, r in results.items()},
        "ours_val_roc_auc": round(auc["ours"], 4),
        "baseline_val_roc_auc": round(auc["fair"], 4),
        "idiom_val_roc_auc": round(auc["idiom"], 4),
        "roc_auc_delta": round(auc["ours"] - auc["fair"], 4),
        "roc_auc_target": "|delta| <= 0.01",
    }
    if big:
        out.update(
            {
                "big_rows": big_rows,
                "big_data_s": round(big["data_s"], 2),
                "big_train_epoch_s": round(big["train_s"], 2),
                "big_peak_rss_gib": round(big["peak_rss_gib"], 3),
                "big_val_roc_auc": round(big["val_roc_auc"], 4),
                "big_rss_target": "< 4 GiB",
            }
        )
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="0 skips the 10M-row part")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.big_rows, args.repeats, threads=args.threads), indent=2))
