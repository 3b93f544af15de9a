from probelint.cli import main

raise SystemExit(main())
