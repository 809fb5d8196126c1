import sys

from ros_mmfusion.cli.main import main

sys.exit(main())
