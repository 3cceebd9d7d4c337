import sys

from cpuidkit.cli.main import main

sys.exit(main())
