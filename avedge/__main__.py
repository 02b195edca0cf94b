import sys

from avedge.cli import main

sys.exit(main())
