import sys

from mos.cli import main

sys.exit(main())
