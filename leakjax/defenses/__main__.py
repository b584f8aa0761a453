"""``python -m leakjax.defenses --list``: the defenses, one line each, with their settings."""

import sys

from leakjax.defenses import describe_all

if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["--list"]):
        print("usage: python -m leakjax.defenses [--list]", file=sys.stderr)
        sys.exit(2)
    print("\n".join(["none          no defense (plain FedAvg)"] + describe_all()))
