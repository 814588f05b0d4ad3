"""``python -m fasttrack``: the same as the ``fasttrack`` command."""

from fasttrack.cli import main

main()
