"""``python -m cli``: the ``empathy`` command without the installed script."""

from cli.main import main

raise SystemExit(main())
