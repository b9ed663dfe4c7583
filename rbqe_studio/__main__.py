"""``python -m rbqe_studio``: start RBQE Studio."""

from rbqe_studio.launch import main

raise SystemExit(main())
