"""python3 -m gsoft.bench: gsoft.GSOrthogonal against the authors' algorithm in plain PyTorch
(gsoft.reference), side by side in one process, forward and forward+backward, with the Cayley
map included in both (it runs on every training step).

    PYTHONPATH=build/python python3 -m gsoft.bench [--shapes 4096x768:8,4096x768:32] [--threads 2]

Each cell is the median over repeats; the speed-ups are ratios of medians measured in the same
run. --json prints one JSON object per shape instead of the table.
"""
import argparse
import json
import statistics
import time

import torch

import gsoft
from gsoft.reference import AuthorsGSOrthogonal


def median_ms(fn, min_seconds, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def parse_shape(text):
    try:
        rows, rest = text.split("x")
        n, b = rest.split(":")
        rows, n, b = int(rows), int(n), int(b)
    except ValueError:
        raise SystemExit(f"--shapes: '{text}' is not ROWSxN:BLOCK_SIZE (for example 4096x768:8)")
    if b <= 0 or n % b:
        raise SystemExit(f"--shapes: '{text}': the block size {b} must divide n = {n}")
    return rows, n, b


def bench_shape(rows, n, b, min_seconds):
    torch.manual_seed(0)
    ours, theirs = gsoft.GSOrthogonal(n, n // b), AuthorsGSOrthogonal(n, n // b)
    with torch.no_grad():
        for m in (ours, theirs):  # a trained-looking, non-identity Q in both
            m.L.copy_(0.1 * torch.randn_like(m.L))
            m.R.copy_(0.1 * torch.randn_like(m.R))
        theirs.load_state_dict(ours.state_dict())
    x = torch.randn(rows, n, requires_grad=True)
    gy = torch.randn(rows, n)
    err = (ours(x) - theirs(x)).abs().max().item()

    def fwd(m):
        with torch.no_grad():
            m(x)

    def fwdbwd(m):
        m.zero_grad(set_to_none=True)
        x.grad = None
        m(x).backward(gy)

    r = {"rows": rows, "n": n, "block_size": b, "threads": torch.get_num_threads(), "max_abs_diff": err}
    r["gsoft_fwd_ms"] = median_ms(lambda: fwd(ours), min_seconds)
    r["authors_fwd_ms"] = median_ms(lambda: fwd(theirs), min_seconds)
    r["gsoft_fwdbwd_ms"] = median_ms(lambda: fwdbwd(ours), min_seconds)
    r["authors_fwdbwd_ms"] = median_ms(lambda: fwdbwd(theirs), min_seconds)
    r["fwd_speedup"] = r["authors_fwd_ms"] / r["gsoft_fwd_ms"]
    r["fwdbwd_speedup"] = r["authors_fwdbwd_ms"] / r["gsoft_fwdbwd_ms"]
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m gsoft.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4096x768:8,4096x768:32",
                    help="comma-separated ROWSxN:BLOCK_SIZE (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="time per measurement (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="one JSON object per shape")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    if not args.json:
        print(f"gsoft {gsoft.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
        print(f"{'shape':>14} {'gsoft fwd':>10} {'authors fwd':>12} {'speed-up':>9} "
              f"{'gsoft f+b':>10} {'authors f+b':>12} {'speed-up':>9} {'max|diff|':>10}")
    for rows, n, b in shapes:
        r = bench_shape(rows, n, b, args.min_seconds)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"{f'{rows}x{n}:{b}':>14} {r['gsoft_fwd_ms']:>8.2f}ms {r['authors_fwd_ms']:>10.2f}ms "
                  f"{r['fwd_speedup']:>8.1f}x {r['gsoft_fwdbwd_ms']:>8.2f}ms {r['authors_fwdbwd_ms']:>10.2f}ms "
                  f"{r['fwdbwd_speedup']:>8.1f}x {r['max_abs_diff']:>10.1e}", flush=True)


if __name__ == "__main__":
    main()
