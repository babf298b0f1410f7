#!/usr/bin/env python
"""The ``coevo-ray`` command as a script, for ``ray job submit`` (which runs a file of the working
directory):

    ray job submit --working-dir . -- python examples/cluster.py --output-dir /tmp/coevo-demo

Options: ``coevo-ray --help`` (the same parser, :mod:`coevo_ray.cli`)."""

import sys

from coevo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main())
