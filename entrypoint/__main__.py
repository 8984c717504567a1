"""``python -m entrypoint``: see :mod:`entrypoint.cli`."""

from entrypoint.cli import main

raise SystemExit(main())
