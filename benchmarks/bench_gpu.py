"""One epoch on 10M rows on a CUDA device: `retrain.train.fit` with `device: auto` against a plain tensor loop.

Both sides get the same encoded rows (`retrain.synth`, encoded day by day as in `bench_train`), the same
network and initial weights, the settings' batch size, fused Adam, learning rate and weight decay, and the data
already on the GPU. The baseline is the simplest fast loop: a `torch.randperm` over the rows, index each batch,
forward, backward, step. Target: ours <= 1.5x the baseline, same ROC AUC +-0.01. Alternating, medians.

Without CUDA the benchmark is skipped (`skipped` says why); this machine has none, so no figure is recorded yet.

Run from the repository root: python -m benchmarks.bench_gpu [--rows 10000000 --repeats 3]
"""

from __future__ import annotations

import json
import statistics
import time

QUICK = {"n_rows": 1_000_000, "repeats": 1}


def _plain_loop(net, train, batch_size: int, seed: int) -> float:
    """Seconds for one epoch of the plain tensor loop on the GPU (synchronised)."""
    import torch
    from torch.nn import functional as F

    from retrain.config import ModelSpec

    defaults = ModelSpec()
    torch.manual_seed(seed)
    x_num, x_cat, y = train
    optimizer = torch.optim.Adam(
        net.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay, fused=True
    )
    net.train()
    torch.cuda.synchronize()
    start = time.perf_counter()
    order = torch.randperm(len(y), device=y.device)
    for first in range(0, len(y), batch_size):
        idx = order[first : first + batch_size]
        loss = F.cross_entropy(net(x_num[idx], x_cat[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    net.eval()
    return seconds


def run(n_rows: int = 10_000_000, repeats: int = 3, seed: int = 0) -> dict:
    """Benchmark result as a dict for benchmarks/run_all.py; `skipped` without a CUDA device."""
    import torch

    name = f"gpu_epoch_{n_rows}"
    if not torch.cuda.is_available():
        return {
            "name": name,
            "ratio": None,
            "target": "<= 1.5",
            "skipped": "no CUDA device (torch.cuda.is_available() is False): nothing measured",
        }
    from benchmarks.bench_train import _arrays, _network, _val_auc
    from retrain.config import ModelSpec
    from retrain.train import fit, resolve_device

    defaults = ModelSpec()
    device = resolve_device("auto")
    net_spec, train, val = _arrays(n_rows, 200_000, seed=seed)
    on_gpu = tuple(torch.from_numpy(a).to(device) for a in train)
    on_gpu = (on_gpu[0], on_gpu[1], on_gpu[2].long())

    def ours() -> tuple[float, float]:
        net = _network(net_spec, train, seed)
        torch.cuda.synchronize()
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
            device=device,
        )
        torch.cuda.synchronize()
        return time.perf_counter() - start, _val_auc(net, val)

    def baseline() -> tuple[float, float]:
        net = _network(net_spec, train, seed).to(device)
        seconds = _plain_loop(net, on_gpu, defaults.batch_size, seed)
        return seconds, _val_auc(net.to("cpu"), val)

    # ours includes copying the arrays to the device (fit takes numpy arrays); the baseline's are there already
    ours(), baseline()  # warm-up: CUDA context, kernels
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "baseline": []}
    for i in range(repeats):
        for side in ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours"):
            results[side].append(ours() if side == "ours" else baseline())
    seconds = {k: statistics.median(s for s, _ in v) for k, v in results.items()}
    return {
        "name": name,
        "device": torch.cuda.get_device_name(0),
        "n_rows": n_rows,
        "repeats": repeats,
        "batch_size": defaults.batch_size,
        "ours_s": round(seconds["ours"], 3),
        "baseline_s": round(seconds["baseline"], 3),
        "ratio": round(seconds["ours"] / seconds["baseline"], 3),
        "target": "<= 1.5",
        "ours_val_roc_auc": round(results["ours"][0][1], 4),
        "baseline_val_roc_auc": round(results["baseline"][0][1], 4),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.repeats), indent=2))
