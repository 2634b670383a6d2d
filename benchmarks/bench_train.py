"""Time one training epoch of `retrain.train.fit` against the common DataLoader(TensorDataset) loop.

Both train the same network (`retrain.model.build_network`, same initial weights) on the same 1M synthetic
rows for one epoch: ours with the default batch size of the settings (`model.batch_size`), the baseline with
`DataLoader(TensorDataset(...), batch_size=256, shuffle=True)`. Both report validation ROC AUC on the same
held-out days. A second part trains one epoch on 10M rows in a subprocess and reports its peak RSS.

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
QUICK = {"n_rows": 200_000, "big_rows": 1_000_000, "repeats": 1}


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
    fit(net, train, val, epochs=1, batch_size=defaults.batch_size, learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay, seed=seed)
    return time.perf_counter() - start, _val_auc(net, val)


def _baseline(net_spec, train, val, seed: int) -> tuple[float, float]:
    """Seconds for one epoch of the DataLoader(TensorDataset, batch_size=256, shuffle=True) loop, and its AUC."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from retrain.config import ModelSpec

    defaults = ModelSpec()
    net = _network(net_spec, train, seed)
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(*(torch.from_numpy(a) for a in train)), batch_size=256, shuffle=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay)
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
    fit(net, train, val, epochs=1, batch_size=defaults.batch_size, learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay, seed=0)
    train_s = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"data_s": data_s, "train_s": train_s, "peak_rss_gib": peak_kib / 2**20,
                      "val_roc_auc": _val_auc(net, val)}))


def _big(n_rows: int) -> dict:
    """Run big_child in a fresh interpreter so its peak RSS is its own."""
    code = f"from benchmarks.bench_train import big_child; big_child({n_rows})"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n_rows: int = 1_000_000, big_rows: int = 10_000_000, repeats: int = 3, seed: int = 0) -> dict:
    """Benchmark result as a dict for benchmarks/run_all.py (median seconds of `repeats` alternating runs)."""
    import statistics

    import torch

    net_spec, train, val = _arrays(n_rows, 200_000, seed=seed)
    # Untimed warm-up on a slice so neither side pays for first calls into torch's kernels.
    warm = tuple(a[:20_000] for a in train)
    _ours(net_spec, warm, val, seed)
    _baseline(net_spec, warm, val, seed)
    ours, baseline = [], []
    for _ in range(repeats):  # alternating, so background load hits both sides alike
        ours.append(_ours(net_spec, train, val, seed))
        baseline.append(_baseline(net_spec, train, val, seed))
    ours_s = statistics.median(s for s, _ in ours)
    baseline_s = statistics.median(s for s, _ in baseline)
    ours_auc, baseline_auc = ours[0][1], baseline[0][1]
    big = _big(big_rows)
    return {
        "name": f"train_epoch_{n_rows}",
        "n_rows": n_rows,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "ours_s": round(ours_s, 3),
        "baseline_s": round(baseline_s, 3),
        "ratio": round(ours_s / baseline_s, 3),
        "target": "<= 0.25",
        "ours_val_roc_auc": round(ours_auc, 4),
        "baseline_val_roc_auc": round(baseline_auc, 4),
        "roc_auc_delta": round(ours_auc - baseline_auc, 4),
        "roc_auc_target": "|delta| <= 0.01",
        "big_rows": big_rows,
        "big_data_s": round(big["data_s"], 2),
        "big_train_epoch_s": round(big["train_s"], 2),
        "big_peak_rss_gib": round(big["peak_rss_gib"], 3),
        "big_val_roc_auc": round(big["val_roc_auc"], 4),
        "big_rss_target": "< 4 GiB",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
