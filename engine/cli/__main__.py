"""`python -m streamhouse.cli`: the same as the `streamhouse` command."""

from streamhouse.cli.main import main

raise SystemExit(main())
