"""`python -m supervisor` is the `hyos-supervisor` command."""

from supervisor.cli import main

raise SystemExit(main())
