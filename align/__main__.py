"""`python -m align ...` is the `align` command (what `accelerate launch -m align` runs)."""

from align.cli import main

raise SystemExit(main())
