from kfts.cli import main

raise SystemExit(main())
