"""``python -m app``: start RBQE Studio."""

from app.main import main

raise SystemExit(main())
