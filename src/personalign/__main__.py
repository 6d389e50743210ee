import sys

from personalign.pipeline.cli import main

sys.exit(main())
