"""Stage: data/DATASET.pt, the training and test images of one CIFAR dataset as uint8 tensors.

Downloads the official archive (or uses the one already in data.raw) and checks its md5; the smoke
profile with `smoke.data: digits` writes scikit-learn's digits in its place instead, and says so.
"""
from pathlib import Path

from ..config import load_params


def add_arguments(parser):
    parser.add_argument("--dataset", required=True, choices=["cifar10", "cifar100"])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", help="converted file (default: data/DATASET.pt)")
    parser.add_argument("--url", help="download from here instead of the official URL")


def run(args):
    params = load_params(args.params)
    out = Path(args.out or f"data/{args.dataset}.pt")
    if params.profile == "smoke" and params.smoke.data == "digits":
        from . import digits

        data = digits.write(args.dataset, out)
        print(f"{out}: SMOKE PROFILE — scikit-learn digits standing in for {args.dataset} "
              f"({len(data['train_y'])} training, {len(data['test_y'])} test images)")
        return
    from . import cifar

    cifar.prepare(args.dataset, params.data.raw, out, getattr(params.data, args.dataset).md5, args.url)
    data = cifar.load(out)
    print(f"{out}: {len(data['train_y'])} training and {len(data['test_y'])} test images, "
          f"{len(data['classes'])} classes")
