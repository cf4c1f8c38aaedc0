import sys

from tc.cli import main

sys.exit(main())
