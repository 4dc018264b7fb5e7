from selfattention.cli import main

raise SystemExit(main())
