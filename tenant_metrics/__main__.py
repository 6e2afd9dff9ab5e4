import sys

from tenant_metrics.cli import main

sys.exit(main())
