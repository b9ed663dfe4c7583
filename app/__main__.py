"""``python -m app``: start RBQE Studio."""

from app.launch import main

raise SystemExit(main())
