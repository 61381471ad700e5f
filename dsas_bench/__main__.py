"""``python -m dsas_bench``."""

from dsas_bench.cli import main

raise SystemExit(main())
