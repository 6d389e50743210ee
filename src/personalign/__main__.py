import sys

from personalign.cli import main

sys.exit(main())
