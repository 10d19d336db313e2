from rcc.cli import main

raise SystemExit(main())
