from lft_core.cli import main

raise SystemExit(main())
